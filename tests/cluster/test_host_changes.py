"""The host record of the real node (tests/cluster/host.py) on this machine's real iptables, mounts,
cgroups and sysctls: what is added after the snapshot goes at undo(), what was there stays."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.cluster.host import HostChanges, cgroup_hierarchies, iptables_rules, mounts_under, sysctl_path

needs_root = pytest.mark.skipif(shutil.which("iptables") is None or not Path("/proc/sys/kernel/panic").exists(),
                                reason="iptables missing (apt-get install iptables)")


def ipt(*args: str) -> None:
    subprocess.run(["iptables", "-w", "5", *args], check=True, capture_output=True)


@needs_root
def test_undo_removes_what_was_added_and_keeps_what_was_there(tmp_path):
    tag = uuid.uuid4().hex[:6].upper()
    kept, added = f"NOVA-KEPT-{tag}", f"NOVA-ADDED-{tag}"
    ipt("-t", "nat", "-N", kept)
    try:
        changes = HostChanges(mount_roots=[tmp_path])
        panic = sysctl_path("kernel.panic").read_text().strip()
        changes.snapshot(["kernel.panic"])
        ipt("-t", "nat", "-N", added)
        ipt("-t", "nat", "-A", added, "-d", "10.250.0.1/32", "-p", "tcp", "--dport", "443", "-j", "RETURN")
        ipt("-t", "nat", "-I", "PREROUTING", "-s", "10.250.0.0/24", "-j", added)
        ipt("-t", "nat", "-A", kept, "-j", "RETURN")  # a rule added to a chain that was there
        changes.set_sysctl("kernel.panic", str(int(panic) + 7))
        mnt = tmp_path / "m"
        mnt.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(mnt)], check=True)
        cgroup = f"nova-test-{tag.lower()}"
        changes.make_cgroup(cgroup)
        (cgroup_hierarchies()[0] / cgroup / "child").mkdir()

        assert changes.undo() == []
        rules = iptables_rules("iptables", "nat")
        assert f"-N {kept}" in rules and not any(added in r for r in rules)
        assert f"-A {kept} -j RETURN" not in rules
        assert sysctl_path("kernel.panic").read_text().strip() == panic
        assert mounts_under([tmp_path]) == []
        assert not any((h / cgroup).exists() for h in cgroup_hierarchies())
        assert changes.undo() == [], "a second undo is a no-op"
    finally:
        subprocess.run(["iptables", "-w", "5", "-t", "nat", "-F", kept], capture_output=True)
        subprocess.run(["iptables", "-w", "5", "-t", "nat", "-X", kept], capture_output=True)


@needs_root
def test_undo_reports_what_it_cannot_undo(tmp_path):
    changes = HostChanges()
    changes.sysctls["kernel.no_such_setting"] = "1"
    problems = changes.undo()
    assert len(problems) == 1 and "kernel.no_such_setting" in problems[0]
