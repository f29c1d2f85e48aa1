"""Fixtures for the operator's cluster tests, on the real control plane of tests/cluster
(etcd, kube-apiserver, kube-controller-manager, kube-scheduler built from upstream, kwok nodes:
two CPU and two with `nvidia.com/gpu` capacity) and a real PostgreSQL (the root conftest's).

- ``kube``: a kubernetes client with the CRD applied and Established.
- ``operator``: ``nova-operator`` as a real subprocess watching the test's namespace (so a kill is
  a real kill and a restart a real restart).
- ``kueue``: the real Kueue manager (built from its Go module, tests/cluster/kueue.py) with its
  CRDs on the control plane, for the session.
- ``e2e``: a namespace on the real node (tests/cluster/node.py: kubelet, containerd, Nova's own
  trainer image) with a models claim, for runs whose pods really run (tests/operator/e2e.py).

Nothing here mocks the API server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes.client import CoreV1Api

from tests.cluster import controlplane
from tests.cluster import kueue as kueue_harness

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "nova.dev_trainingruns.yaml"
SCHEDULE_CRD_FILE = ROOT / "crds" / "nova.dev_trainingschedules.yaml"


@pytest.fixture(scope="session")
def operator_pg(postgres):
    """The session's PostgreSQL (tests/conftest.py); each test makes its own database."""
    return postgres


@pytest.fixture
def kube(control_plane, monkeypatch):
    """A kubernetes client on the test control plane, with the CRD applied and established."""
    monkeypatch.setenv("KUBECONFIG", str(control_plane.kubeconfig))
    apply_crd(control_plane)
    return control_plane.api_client()


def apply_crd(control_plane) -> None:
    for path, name in ((CRD_FILE, "trainingruns.nova.dev"), (SCHEDULE_CRD_FILE, "trainingschedules.nova.dev")):
        control_plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path), timeout=120)
        deadline = time.monotonic() + 90
        while True:  # `kubectl wait` errors out while the new CRD has no status.conditions yet
            out = control_plane.kubectl("get", f"crd/{name}", "-o",
                                        'jsonpath={.status.conditions[?(@.type=="Established")].status}', check=False)
            if out.returncode == 0 and out.stdout.strip() == "True":
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"the CRD {name} is not Established after 90 s: {out.stderr}")
            time.sleep(0.2)


def operator_command() -> list[str]:
    """The console script of this virtualenv, as a user runs it."""
    script = Path(sys.executable).parent / "nova-operator"
    return [str(script)] if script.exists() else [sys.executable, "-m", "nova_operator.main"]


@dataclass
class Operator:
    """`nova-operator` as a real subprocess, so a restart is a real restart."""

    kubeconfig: Path
    namespaces: list[str]
    env: dict[str, str]
    status_interval: float = 1
    proc: subprocess.Popen | None = None
    log: Path | None = None

    def start(self) -> Operator:
        self.log = Path(tempfile.mkstemp(prefix="nova-operator-", suffix=".log")[1])
        out = open(self.log, "a")  # noqa: SIM115 - lives as long as the process
        args = [a for ns in self.namespaces for a in ("-n", ns)] or ["-A"]
        self.proc = subprocess.Popen([*operator_command(), *args, "--status-interval", str(self.status_interval)],
                                     env={**os.environ, "KUBECONFIG": str(self.kubeconfig), **self.env},
                                     stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        out.close()
        return self

    @property
    def namespace(self) -> str:
        return self.namespaces[0]

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, as when a node dies under the operator."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=20)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log and self.log.exists() else ""

    def close(self) -> None:
        """Stop it and remove its log: a suite's worth of logs must not pile up in the host's /tmp."""
        self.stop()
        if self.log:
            self.log.unlink(missing_ok=True)


@pytest.fixture
def operator(control_plane, kube, kube_namespace):
    ops: list[Operator] = []

    def make(**env: str) -> Operator:
        op = Operator(control_plane.kubeconfig, [kube_namespace],
                      {"NOVA_TRAINER_IMAGE": "nova-trainer:test", **env}).start()
        ops.append(op)
        return op

    yield make
    for op in ops:
        op.close()


@pytest.fixture(scope="session")
def kueue(control_plane):
    """Kueue's manager, out of cluster, against the control plane (its CRDs applied)."""
    if not kueue_harness.built():
        if controlplane.go_toolchain() is None:
            pytest.skip("Kueue is built from its Go module and no Go toolchain (go >= 1.26) was found")
        kueue_harness.ensure_built(log=lambda m: print(m, flush=True))
    k = kueue_harness.start(control_plane)
    try:
        yield k
    finally:
        k.stop()
        assert not k.alive(), "the Kueue manager outlived its stop()"


@pytest.fixture
def e2e(control_plane, kube, real_node, kube_namespace, operator, pg_url):
    from tests.operator.e2e import E2E

    harness = E2E(control_plane, kube, real_node, kube_namespace, operator, pg_url)
    try:
        yield harness
    finally:
        harness.close()


@pytest.fixture
def gpu_nodes(kube) -> list[str]:
    """The harness's kwok nodes with GPU capacity (tests/cluster: kwok-gpu-0, kwok-gpu-1)."""
    found = [n.metadata.name for n in CoreV1Api(kube).list_node().items
             if int((n.status.allocatable or {}).get("nvidia.com/gpu", "0")) > 0]
    assert found, "the control plane has no GPU nodes"
    return found
