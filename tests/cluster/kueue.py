"""The real Kueue manager beside the test control plane, run out of cluster as a process.

Built by ``tests/cluster/build.sh`` from the Go module sigs.k8s.io/kueue (version in versions.env)
into ``${NOVA_CACHE:-~/.cache/nova}/kueue-<version>/``: ``bin/kueue`` (its cmd/kueue) and
``crds/`` (the CRD YAML of the module's config/components/crd/bases, copied from the Go module
cache; nothing of Kueue is kept in this repository).

How it runs without a cluster of its own:
- a config file (config.kueue.x-k8s.io/v1beta2): the batch/job integration only, no leader
  election, metrics off, the visibility API server off, internal certificate management off (it
  would inject CA bundles into webhook configurations and CRDs). The webhook server still listens,
  on loopback with a self-signed certificate, but no webhook configuration points at it: Nova
  creates its Jobs suspended itself, which is all Kueue's Job webhook would have done for them.
- Kueue reads a metrics certificate from the fixed path /etc/kueue/metrics/certs even with metrics
  off; the manager runs in a private mount namespace (unshare) where an overlay on /etc adds that
  folder, so nothing is written to this machine's /etc.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.cluster import controlplane

FRAMEWORKS = ["batch/job"]


def kueue_dir() -> Path:
    root = Path(os.environ.get("NOVA_CACHE") or Path.home() / ".cache" / "nova")
    return root / f"kueue-{controlplane.versions()['KUEUE_VERSION']}"


def binary() -> Path:
    return kueue_dir() / "bin" / "kueue"


def built() -> bool:
    stamp = kueue_dir() / ".version"
    return binary().is_file() and stamp.is_file() and \
        stamp.read_text().strip() == controlplane.versions()["KUEUE_VERSION"]


def ensure_built(log=print) -> Path:
    """build.sh --kueue-only (a no-op when built); returns the Kueue folder."""
    if built():
        return kueue_dir()
    go = controlplane.go_toolchain()
    if go is None:
        raise FileNotFoundError("no Go toolchain: install Go >= 1.26 (or set GO=) to build Kueue")
    log(f"building Kueue into {kueue_dir()} (a cold build takes many minutes)")
    started = time.monotonic()
    build_log = kueue_dir().parent / f"kueue-{controlplane.versions()['KUEUE_VERSION']}-build.log"
    env = {**os.environ, "GO": go, "PATH": f"{Path(go).parent}:{os.environ.get('PATH', '')}"}
    with open(build_log, "wb") as out:
        rc = subprocess.run(["bash", str(controlplane.BUILD_SCRIPT), "--kueue-only"], env=env, stdout=out,
                            stderr=subprocess.STDOUT).returncode
    if rc != 0 or not built():
        tail = "\n".join(build_log.read_text(errors="replace").splitlines()[-40:])
        raise controlplane.ControlPlaneError(f"building Kueue failed (rc={rc}); log {build_log}:\n{tail}")
    log(f"built Kueue in {time.monotonic() - started:.0f} s")
    return kueue_dir()


def crd_files() -> list[Path]:
    files = sorted((kueue_dir() / "crds").glob("kueue.x-k8s.io_*.yaml"))
    if not files:
        raise controlplane.ControlPlaneError(f"no Kueue CRDs in {kueue_dir() / 'crds'}: run build.sh --kueue-only")
    return files


def _self_signed(d: Path) -> None:
    """tls.crt/tls.key for 127.0.0.1/localhost: the webhook server's and the (unused) metrics one."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kueue-test")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    d.mkdir(parents=True, exist_ok=True)
    (d / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "tls.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))


def config(health_port: int, webhook_port: int, cert_dir: Path) -> dict:
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2", "kind": "Configuration",
        "namespace": "kueue-system",
        "health": {"healthProbeBindAddress": f"127.0.0.1:{health_port}"},
        "metrics": {"bindAddress": "0"},
        "webhook": {"port": webhook_port, "host": "127.0.0.1", "certDir": str(cert_dir)},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
        "manageJobsWithoutQueueName": False,
        "integrations": {"frameworks": FRAMEWORKS},
        "featureGates": {"VisibilityOnDemand": False},
    }


@dataclass
class Kueue:
    """A running Kueue manager; ``stop()`` ends it (SIGTERM to its process group, then SIGKILL)."""

    workdir: Path
    proc: subprocess.Popen
    health_port: int
    log: Path
    startup_seconds: float = 0.0
    _stopped: bool = field(default=False)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=10)
        shutil.rmtree(self.workdir, ignore_errors=True)


def apply_crds(cp: controlplane.ControlPlane, timeout: float = 120) -> None:
    """Kueue's CRDs, server-side (the Workload CRD is too large for a client-side apply's annotation)."""
    for f in crd_files():
        cp.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(f), timeout=timeout)
    names = [yaml.safe_load(f.read_text())["metadata"]["name"] for f in crd_files()]
    cp.kubectl("wait", "--for=condition=Established", "--timeout=90s", *[f"crd/{n}" for n in names], timeout=120)


def _launcher(etc_upper: Path, etc_work: Path) -> list[str]:
    """unshare into a private mount namespace with an overlay on /etc (a user namespace too when not
    root), then exec the manager: one process, so its pid is the manager's."""
    script = (f'mount -t overlay overlay -o lowerdir=/etc,upperdir={etc_upper},workdir={etc_work} /etc && '
              'exec "$0" "$@"')
    userns = [] if os.geteuid() == 0 else ["--map-root-user"]
    return ["unshare", "--mount", "--propagation", "private", *userns, "sh", "-c", script]


def start(cp: controlplane.ControlPlane, timeout: float = 120, log=print) -> Kueue:
    """Apply the CRDs, start the manager against the control plane's kubeconfig, wait for /readyz."""
    if shutil.which("unshare") is None:
        raise controlplane.ControlPlaneError("Kueue runs in a private mount namespace: `unshare` (util-linux) "
                                             "is needed")
    started = time.monotonic()
    apply_crds(cp)
    cp.kubectl("create", "namespace", "kueue-system", check=False)
    work = Path(tempfile.mkdtemp(prefix="nova-kueue-"))
    certs = work / "certs"
    _self_signed(certs)
    upper, ovl_work = work / "etc-upper", work / "etc-work"
    _self_signed(upper / "kueue" / "metrics" / "certs")
    ovl_work.mkdir(parents=True)
    health, webhook = controlplane.free_ports(2)
    cfg = work / "config.yaml"
    cfg.write_text(yaml.safe_dump(config(health, webhook, certs)))
    log_path = work / "kueue.log"
    out = open(log_path, "wb")  # noqa: SIM115 - the child owns it
    try:
        proc = subprocess.Popen([*_launcher(upper, ovl_work), str(binary()), f"--config={cfg}", "--zap-log-level=2"],
                                env={**os.environ, "KUBECONFIG": str(cp.kubeconfig)}, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=work,
                                start_new_session=True, preexec_fn=controlplane._set_pdeathsig)
    finally:
        out.close()
    k = Kueue(work, proc, health, log_path)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            tail = k.log_tail()
            k.stop()
            raise controlplane.ControlPlaneError(f"the Kueue manager exited with {proc.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{health}/readyz", timeout=2) as r:
                if r.status == 200:
                    break
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            tail = k.log_tail()
            k.stop()
            raise controlplane.ControlPlaneError(f"Kueue not ready after {timeout} s:\n{tail}")
        time.sleep(0.3)
    k.startup_seconds = time.monotonic() - started
    log(f"Kueue {controlplane.versions()['KUEUE_VERSION']} ready in {k.startup_seconds:.1f} s (log {log_path})")
    return k
