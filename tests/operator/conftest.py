"""Fixtures for the operator's cluster tests.

When the control-plane harness (`tests/cluster/fixtures.py`: `control_plane`, `kube_namespace`,
kwok nodes) is present, the root conftest registers it and these tests use it. Until then, a
minimal stand-in below starts the same upstream binaries (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler) from $NOVA_KUBE_BIN_DIR on loopback, and the tests skip
when those binaries are absent. Nothing here mocks the API server.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "nova.dev_trainingruns.yaml"


def _harness_present() -> bool:
    try:
        return importlib.util.find_spec("tests.cluster.fixtures") is not None
    except ModuleNotFoundError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class StandInControlPlane:
    kubeconfig: Path
    workdir: Path
    procs: list[subprocess.Popen]

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(self.procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


def _bin_dir() -> Path | None:
    for candidate in (os.environ.get("NOVA_KUBE_BIN_DIR"), Path.home() / ".cache" / "nova" / "bin"):
        if candidate and all((Path(candidate) / b).exists() for b in
                             ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")):
            return Path(candidate)
    return None


def _start_stand_in(bins: Path) -> StandInControlPlane:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    work = Path(tempfile.mkdtemp(prefix="nova-cp-"))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (work / "sa.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
    (work / "sa.pub").write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                                serialization.PublicFormat.SubjectPublicKeyInfo))
    token = uuid.uuid4().hex
    (work / "tokens.csv").write_text(f"{token},admin,admin,system:masters\n")
    etcd_port, peer_port, api_port = _free_port(), _free_port(), _free_port()
    logs = work / "logs"
    logs.mkdir()
    procs: list[subprocess.Popen] = []

    def start(name: str, *argv: str) -> None:
        out = open(logs / f"{name}.log", "w")  # noqa: SIM115 - lives as long as the process
        procs.append(subprocess.Popen([str(bins / name), *argv], stdout=out, stderr=subprocess.STDOUT))

    start("etcd", f"--data-dir={work / 'etcd'}", f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
          f"--advertise-client-urls=http://127.0.0.1:{etcd_port}", f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
          f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
          f"--initial-cluster=default=http://127.0.0.1:{peer_port}", "--unsafe-no-fsync")
    start("kube-apiserver", f"--etcd-servers=http://127.0.0.1:{etcd_port}", "--bind-address=127.0.0.1",
          f"--secure-port={api_port}", f"--cert-dir={work / 'certs'}", f"--token-auth-file={work / 'tokens.csv'}",
          "--authorization-mode=RBAC", "--service-account-issuer=https://kubernetes.default.svc",
          f"--service-account-key-file={work / 'sa.pub'}", f"--service-account-signing-key-file={work / 'sa.key'}",
          "--service-cluster-ip-range=10.96.0.0/16", "--advertise-address=127.0.0.1")
    kubeconfig = work / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "nova",
        "clusters": [{"name": "nova", "cluster": {"server": f"https://127.0.0.1:{api_port}",
                                                  "insecure-skip-tls-verify": True}}],
        "users": [{"name": "admin", "user": {"token": token}}],
        "contexts": [{"name": "nova", "context": {"cluster": "nova", "user": "admin"}}]}))
    cp = StandInControlPlane(kubeconfig, work, procs)
    deadline = time.monotonic() + 90
    while subprocess.run(["kubectl", f"--kubeconfig={kubeconfig}", "get", "--raw", "/readyz"],
                         capture_output=True).returncode != 0:
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            cp.stop()
            raise RuntimeError(f"the control plane did not start; logs in {logs}")
        time.sleep(0.5)
    # no kubelets: node lifecycle would taint the hand-made nodes unreachable after 40 s
    start("kube-controller-manager", f"--kubeconfig={kubeconfig}", "--leader-elect=false",
          "--controllers=*,-nodelifecycle", f"--service-account-private-key-file={work / 'sa.key'}",
          "--bind-address=127.0.0.1", f"--secure-port={_free_port()}")
    start("kube-scheduler", f"--kubeconfig={kubeconfig}", "--leader-elect=false", "--bind-address=127.0.0.1",
          f"--secure-port={_free_port()}")
    return cp


if not _harness_present():
    _ns_counter = itertools.count()

    @pytest.fixture(scope="session")
    def control_plane():
        bins = _bin_dir()
        if bins is None:
            pytest.skip("control-plane binaries not built: set NOVA_KUBE_BIN_DIR to a folder with etcd, "
                        "kube-apiserver, kube-controller-manager and kube-scheduler (tests/cluster builds them)")
        cp = _start_stand_in(bins)
        yield cp
        cp.stop()
        shutil.rmtree(cp.workdir, ignore_errors=True)

    @pytest.fixture
    def kube_namespace(control_plane):
        name = f"t{os.getpid() % 10000}-{next(_ns_counter)}"
        subprocess.run(["kubectl", f"--kubeconfig={control_plane.kubeconfig}", "create", "namespace", name],
                       check=True, capture_output=True)
        yield name
        subprocess.run(["kubectl", f"--kubeconfig={control_plane.kubeconfig}", "delete", "namespace", name,
                        "--wait=false"], capture_output=True)


@pytest.fixture(scope="session")
def operator_pg():
    """A real PostgreSQL for the studies (one server per session)."""
    from tests.support.postgres import start_postgres

    server = start_postgres()
    yield server
    server.destroy()


@pytest.fixture
def kube(control_plane, monkeypatch):
    """A kubernetes client on the test control plane, with the CRD applied and established."""
    import kubernetes

    monkeypatch.setenv("KUBECONFIG", str(control_plane.kubeconfig))
    subprocess.run(["kubectl", f"--kubeconfig={control_plane.kubeconfig}", "apply", "--server-side",
                    "--force-conflicts", "-f", str(CRD_FILE)], check=True, capture_output=True)
    subprocess.run(["kubectl", f"--kubeconfig={control_plane.kubeconfig}", "wait", "--for=condition=Established",
                    "crd/trainingruns.nova.dev", "--timeout=60s"], check=True, capture_output=True)
    client = kubernetes.config.new_client_from_config(str(control_plane.kubeconfig))
    return client


@dataclass
class Operator:
    """`nova-operator` as a real subprocess, so a restart is a real restart."""

    kubeconfig: Path
    namespace: str
    env: dict[str, str]
    proc: subprocess.Popen | None = None
    log: Path | None = None

    def start(self) -> Operator:
        self.log = Path(tempfile.mkstemp(prefix="nova-operator-", suffix=".log")[1])
        out = open(self.log, "a")  # noqa: SIM115
        self.proc = subprocess.Popen([sys.executable, "-m", "nova_operator.main", "-n", self.namespace,
                                      "--status-interval", "1"],
                                     env={**os.environ, "KUBECONFIG": str(self.kubeconfig), **self.env},
                                     stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        return self

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, as when a node dies under the operator."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=20)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def output(self) -> str:
        return self.log.read_text() if self.log else ""


@pytest.fixture
def operator(control_plane, kube, kube_namespace):
    ops: list[Operator] = []

    def make(**env: str) -> Operator:
        op = Operator(control_plane.kubeconfig, kube_namespace,
                      {"NOVA_TRAINER_IMAGE": "nova-trainer:test", **env}).start()
        ops.append(op)
        return op

    yield make
    for op in ops:
        op.stop()
