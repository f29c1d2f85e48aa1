"""Changes a real node makes to the host, recorded before they happen and undone afterwards.

kubelet, containerd, runc and the CNI plugins change the machine they run on: sysctls, iptables
chains and rules (v4 and v6), a bridge and its veths, network namespaces under /run/netns, mounts
under their root folders, cgroups. `HostChanges` snapshots what it can see before the node starts
and `undo()` removes exactly what was added since (never what was there before: another process's
chains or mounts stay), in the order that works: mounts, network namespaces, links, iptables,
cgroups, sysctls. Each step is tried even when an earlier one failed; `undo()` returns what it could
not undo so that the fixture can fail the session with it."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
NETNS_DIR = Path("/run/netns")
IPTABLES = ("iptables", "ip6tables")
WATCHED = (Path("/var/lib/cni"), Path("/var/log/containers"), Path("/var/log/pods"), Path("/run/containerd"),
           Path("/var/lib/kubelet"), Path("/etc/cni"), Path("/run/runc"), Path("/opt/containerd"))
TABLES = ("filter", "nat", "mangle")


def _run(*argv: str, check: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=60)


def sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def iptables_rules(binary: str, table: str) -> list[str]:
    """One table in `iptables -S` form ([] when the binary or table is not there), read with
    iptables-save: `iptables -S` would create the table (iptables-nft), a change of its own."""
    if shutil.which(f"{binary}-save") is None:
        return []
    proc = _run(f"{binary}-save", "-t", table)
    out = []
    for line in proc.stdout.splitlines() if proc.returncode == 0 else []:
        if line.startswith(":"):
            chain, policy = line[1:].split()[:2]
            out.append(f"-N {chain}" if policy == "-" else f"-P {chain} {policy}")
        elif line.startswith("-A "):
            out.append(line)
    return out


def nft_tables() -> set[str]:
    """'family name' of every nftables table (iptables-nft keeps its tables there); empty without nft."""
    if shutil.which("nft") is None:
        return set()
    proc = _run("nft", "list", "tables")
    return {line.removeprefix("table ").strip() for line in proc.stdout.splitlines() if line.startswith("table ")}


def mounts_under(roots: list[Path]) -> list[str]:
    """Mount points at or below any of `roots`, deepest first (from /proc/self/mountinfo)."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        if any(point == str(r) or point.startswith(str(r).rstrip("/") + "/") for r in roots):
            found.append(point)
    return sorted(set(found), key=lambda p: p.count("/"), reverse=True)


def cgroup_hierarchies() -> list[Path]:
    """Every mounted cgroup hierarchy (v1 controllers and the unified one, on a hybrid host)."""
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        fstype = fields[fields.index("-") + 1]
        if fstype in ("cgroup", "cgroup2") and fields[4].startswith(str(CGROUP_ROOT)):
            out.append(Path(fields[4]))
    return sorted(set(out))


@dataclass
class HostChanges:
    """What the node is about to change, as it was before; `undo()` puts it back."""

    mount_roots: list[Path] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    cgroup: str | None = None
    sysctls: dict[str, str] = field(default_factory=dict)
    iptables: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    netns: set[str] = field(default_factory=set)
    netns_dir: bool = True
    tables: set[str] | None = None  # None until snapshot(): an unrecorded host has no "new" tables
    # folders the parts write into whatever their configuration says (CNI's cache in /var/lib/cni,
    # kubelet's symlinks in /var/log/containers): what appears in them is removed at undo
    watched: dict[Path, set[str] | None] = field(default_factory=dict)
    undone: bool = False

    def snapshot(self, sysctls: list[str]) -> None:
        """Record the sysctls, iptables rules and network namespaces as they are now."""
        for name in sysctls:
            self.sysctls[name] = sysctl_path(name).read_text().strip()
        for binary in IPTABLES:
            for table in TABLES:
                self.iptables[(binary, table)] = iptables_rules(binary, table)
        self.netns = set(os.listdir(NETNS_DIR)) if NETNS_DIR.is_dir() else set()
        self.netns_dir = NETNS_DIR.is_dir()
        self.tables = nft_tables()
        for d in WATCHED:
            self.watched[d] = {str(p.relative_to(d)) for p in d.rglob("*")} if d.exists() else None

    def set_sysctl(self, name: str, value: str) -> None:
        if name not in self.sysctls:
            self.sysctls[name] = sysctl_path(name).read_text().strip()
        sysctl_path(name).write_text(value)

    def make_cgroup(self, name: str) -> str:
        """/<name> in every hierarchy (kubelet's cgroupRoot must exist in all of them)."""
        self.cgroup = name
        for h in cgroup_hierarchies():
            (h / name).mkdir(exist_ok=True)
            for knob in ("cpuset.cpus", "cpuset.mems"):  # v1 cpuset: a new cgroup starts with none
                if (h / knob).exists() and not (h / name / knob).read_text().strip():
                    (h / name / knob).write_text((h / knob).read_text())
        return f"/{name}"

    def undo(self) -> list[str]:
        if self.undone:
            return []
        self.undone = True
        problems: list[str] = []
        for step in (self._unmount, self._remove_netns, self._remove_links, self._restore_iptables,
                     self._remove_cgroups, self._restore_sysctls, self._remove_new_files):
            try:
                problems += step()
            except Exception as exc:  # noqa: BLE001 - every step runs; the failure is reported
                problems.append(f"{step.__name__}: {exc!r}")
        return problems

    def _unmount(self) -> list[str]:
        left = []
        for _ in range(3):
            left = mounts_under(self.mount_roots)
            for point in left:
                _run("umount", "--lazy", point)
            if not left:
                return []
        return [f"still mounted: {p}" for p in mounts_under(self.mount_roots)]

    def _remove_netns(self) -> list[str]:
        if not NETNS_DIR.is_dir():
            return []
        problems = []
        for name in sorted(set(os.listdir(NETNS_DIR)) - self.netns):
            path = NETNS_DIR / name
            _run("umount", "--lazy", str(path))
            try:
                path.unlink()
            except OSError as exc:
                problems.append(f"network namespace {path}: {exc}")
        if not self.netns_dir and not os.listdir(NETNS_DIR):
            NETNS_DIR.rmdir()
        return problems

    def _remove_links(self) -> list[str]:
        problems = []
        for link in self.links:
            if Path(f"/sys/class/net/{link}").exists():
                proc = _run("ip", "link", "delete", link)
                if proc.returncode != 0:
                    problems.append(f"ip link delete {link}: {proc.stderr.strip()}")
        return problems

    def _restore_iptables(self) -> list[str]:
        """Delete the rules added since the snapshot, then flush and delete the chains added."""
        problems = []
        for (binary, table), before in self.iptables.items():
            now = iptables_rules(binary, table)
            old = set(before)
            added = [r for r in now if r not in old]
            for rule in (r for r in added if r.startswith("-A ")):
                args = shlex.split(rule)
                proc = _run(binary, "-w", "5", "-t", table, "-D", *args[1:])
                if proc.returncode != 0:
                    problems.append(f"{binary} -t {table} {rule}: {proc.stderr.strip()}")
            chains = [shlex.split(r)[1] for r in added if r.startswith("-N ")]
            for chain in chains:
                _run(binary, "-w", "5", "-t", table, "-F", chain)
            for chain in chains:
                proc = _run(binary, "-w", "5", "-t", table, "-X", chain)
                if proc.returncode != 0:
                    problems.append(f"{binary} -t {table} -X {chain}: {proc.stderr.strip()}")
            policies = {r for r in before if r.startswith("-P ")}
            for rule in (r for r in now if r.startswith("-P ") and r not in policies):
                old_policy = next((p for p in policies if p.split()[1] == rule.split()[1]), None)
                if old_policy:
                    _run(binary, "-w", "5", "-t", table, *shlex.split(old_policy))
        # tables that iptables-nft created on the way, empty again now: gone too
        for table in sorted(nft_tables() - self.tables) if self.tables is not None else []:
            family, name = table.split()
            binary = {"ip": "iptables", "ip6": "ip6tables"}.get(family)
            rules = iptables_rules(binary, name) if binary else ["?"]
            if all(r.startswith("-P ") and r.endswith(" ACCEPT") for r in rules):
                proc = _run("nft", "delete", "table", family, name)
                if proc.returncode != 0:
                    problems.append(f"nft delete table {table}: {proc.stderr.strip()}")
            else:
                problems.append(f"nftables table {table} was made during the session and still has rules: {rules}")
        return problems

    def _remove_cgroups(self) -> list[str]:
        if not self.cgroup:
            return []
        problems = []
        for h in cgroup_hierarchies():
            top = h / self.cgroup
            if not top.is_dir():
                continue
            dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
            for d in [*dirs, top]:
                for _ in range(50):  # a process that just exited may still be charged for a moment
                    try:
                        d.rmdir()
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        time.sleep(0.1)
                else:
                    procs = d / "cgroup.procs"
                    problems.append(f"cgroup {d} not removable (processes: "
                                    f"{procs.read_text().split() if procs.exists() else '?'})")
        return problems

    def _remove_new_files(self) -> list[str]:
        problems = []
        for d, before in self.watched.items():
            if not d.exists():
                continue
            if before is None:
                shutil.rmtree(d, ignore_errors=True)
            else:
                new = [p for p in d.rglob("*") if str(p.relative_to(d)) not in before]
                for p in sorted(new, key=lambda p: len(p.parts), reverse=True):
                    try:
                        p.rmdir() if p.is_dir() and not p.is_symlink() else p.unlink()
                    except OSError as exc:
                        problems.append(f"{p}: {exc}")
            if d.exists() and before is None:
                problems.append(f"{d} could not be removed")
        return problems

    def _restore_sysctls(self) -> list[str]:
        problems = []
        for name, value in self.sysctls.items():
            try:
                if sysctl_path(name).read_text().strip() != value:
                    sysctl_path(name).write_text(value)
            except OSError as exc:
                problems.append(f"sysctl {name}={value}: {exc}")
        return problems
