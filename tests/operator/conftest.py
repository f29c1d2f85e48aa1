"""Fixtures for the operator's cluster tests, on the real control plane of tests/cluster
(etcd, kube-apiserver, kube-controller-manager, kube-scheduler built from upstream, kwok nodes:
two CPU and two with `nvidia.com/gpu` capacity) and a real PostgreSQL (the root conftest's).

- ``kube``: a kubernetes client with the CRD applied and Established.
- ``operator``: ``nova-operator`` as a real subprocess watching the test's namespace (so a kill is
  a real kill and a restart a real restart).
- ``kueue``: the real Kueue manager (built from its Go module, tests/cluster/kueue.py) with its
  CRDs on the control plane, for the session.
- ``e2e_runner``: a local-runner node of this package's own (see :func:`e2e_runner`), where pods
  really run: `nova-trainer prep|tune|refit` as local processes.

Nothing here mocks the API server."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes.client import CoreV1Api

from tests.cluster import controlplane
from tests.cluster import kueue as kueue_harness
from tests.cluster import local_runner as lr
from tests.cluster.fixtures import LOCAL_RUNNER_TOLERATION

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "nova.dev_trainingruns.yaml"
SCHEDULE_CRD_FILE = ROOT / "crds" / "nova.dev_trainingschedules.yaml"
E2E_NODE = "nova-e2e-runner"
ON_E2E_NODE = {"nodeSelector": {"kubernetes.io/hostname": E2E_NODE}, "tolerations": [LOCAL_RUNNER_TOLERATION]}
TERMINATION_MESSAGE_LIMIT = 4096  # kubelet's cap on a termination message


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
        op.stop()
        if op.log:
            op.log.unlink(missing_ok=True)


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


# ------------------------------------------------------------------------- the e2e runner node
class _TerminationMessages(lr.PodWorker):
    """What tests/cluster/local_runner.py does not do yet and the e2e run needs. (1) kubelet's
    terminationMessagePath (a file the container writes, read back into the terminated state's
    message) and terminationMessagePolicy FallbackToLogsOnError (the log's tail when the container
    failed without a message); the path is rewritten like a mount path, so nothing is written to
    this machine's /dev. (2) PATH and PYTHONPATH kept as the runner set them (see container_env).
    (3) PersistentVolumeClaims shared between pods (see _share_claims). Only for runners that ask
    (``termination_messages = True``)."""

    def _enabled(self) -> bool:
        return bool(getattr(self.runner, "termination_messages", False))

    def _message_file(self, name: str) -> Path:
        return self.dir / "termination" / name

    def prepare_volumes(self) -> None:
        super().prepare_volumes()
        if not self._enabled():
            return
        self._share_claims()
        for c in (self.pod["spec"].get("initContainers") or []) + self.pod["spec"]["containers"]:
            f = self._message_file(c["name"])
            f.parent.mkdir(parents=True, exist_ok=True)
            f.touch()
            path = c.get("terminationMessagePath") or "/dev/termination-log"
            self.mounts_by_container.setdefault(c["name"], {})[path] = str(f)

    def _share_claims(self) -> None:
        """(3) A PersistentVolumeClaim is one folder per claim on this node (`claims/<ns>/<claim>`),
        shared by every pod that mounts it, as a ReadWriteMany volume is; the runner alone makes each
        pod's a fresh empty folder. Promotion needs it: the refit pods of two runs write the models
        that the promote pod then reads from the same claim."""
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"]
                  for v in self.pod["spec"].get("volumes") or [] if "persistentVolumeClaim" in v}
        for c in (self.pod["spec"].get("initContainers") or []) + self.pod["spec"]["containers"]:
            for m in c.get("volumeMounts") or []:
                if m["name"] in claims:
                    target = self.runner.root / "claims" / self.ns / claims[m["name"]] / (m.get("subPath") or "")
                    target.mkdir(parents=True, exist_ok=True)
                    self.mounts_by_container.setdefault(c["name"], {})[m["mountPath"].rstrip("/")] = str(target)

    def container_env(self, c: dict) -> dict[str, str]:
        env = super().container_env(c)
        if self._enabled():
            # the runner rewrites mount paths in env values too: this checkout (and its venv) lives
            # under /work, which the worker pods mount as an emptyDir, so PATH and PYTHONPATH would
            # point into the pod's volume; the pods set neither, so put back what the runner meant
            env["PATH"] = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"
            for k in self.runner.pass_env:
                if k in os.environ:
                    env[k] = os.environ[k]
        return env

    def record_exit(self, proc: lr.Proc) -> None:
        super().record_exit(proc)
        if not self._enabled() or proc.exit_code is None or proc.message:
            return
        f = self._message_file(proc.name)
        message = f.read_text(errors="replace")[-TERMINATION_MESSAGE_LIMIT:] if f.exists() else ""
        if not message.strip() and proc.exit_code != 0 and self._policy(proc.name) == "FallbackToLogsOnError":
            log = self.runner.log_path(self.ns, self.name, proc.name)
            lines = log.read_text(errors="replace").splitlines()[-80:] if log.exists() else []
            message = "\n".join(lines)[-2048:]
        proc.message = message or None

    def _policy(self, name: str) -> str:
        for c in (self.pod["spec"].get("initContainers") or []) + self.pod["spec"]["containers"]:
            if c["name"] == name:
                return c.get("terminationMessagePolicy") or "File"
        return "File"


_patch_lock = threading.Lock()


@pytest.fixture(scope="session")
def e2e_runner(control_plane):
    """A local-runner node of our own, `nova-e2e-runner` (pods select it by hostname and tolerate
    the local-runner taint), rooted outside /tmp.

    Why not the session's `local_runner`: its folders live under pytest's /tmp, and the runner
    rewrites mount paths one after another, so a path already rewritten into /tmp/pytest-.../X is
    rewritten again by the worker pods' own `/tmp` emptyDir mount (restricted pods mount one for
    their read-only root filesystem). Its pods also get termination messages (see
    _TerminationMessages): the refit reports its summary that way."""
    root = Path(tempfile.mkdtemp(prefix="e2e-runner-", dir=controlplane.cache_dir().parent))
    with _patch_lock:
        original = lr.PodWorker
        lr.PodWorker = _TerminationMessages  # LocalRunner.sync builds pods' workers from this name
    runner = lr.LocalRunner(control_plane.kubeconfig, root, node_name=E2E_NODE,
                            pass_env=("PYTHONPATH", "LANG", "LC_ALL", "TZ", "NOVA_CACHE"))
    runner.termination_messages = True
    runner.start()
    try:
        control_plane.wait_nodes_ready([E2E_NODE], timeout=60)
        yield runner
    finally:
        runner.stop(delete_node=True)
        with _patch_lock:
            lr.PodWorker = original
        left = runner.alive_pids()
        for pid in left:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(root, ignore_errors=True)
        assert not left, f"the e2e runner left processes behind: {left}"


@pytest.fixture
def gpu_nodes(kube) -> list[str]:
    """The harness's kwok nodes with GPU capacity (tests/cluster: kwok-gpu-0, kwok-gpu-1)."""
    found = [n.metadata.name for n in CoreV1Api(kube).list_node().items
             if int((n.status.allocatable or {}).get("nvidia.com/gpu", "0")) > 0]
    assert found, "the control plane has no GPU nodes"
    return found
