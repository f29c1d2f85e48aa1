"""A real node for the test control plane: containerd 2.x + runc + kubelet 1.36 on a local bridge,
running Nova's images (tests/cluster/images.sh) in real pods.

Built by tests/cluster/build.sh (kubelet from the same wrapper module as the control plane,
containerd and runc from their Go modules, pause from kubernetes' build/pause). What this host
needs, in one place (HOST_SETTINGS below and the kubelet/containerd configs it writes):

- cgroups are v1 here (hybrid; the unified hierarchy cannot be switched on), which kubelet 1.36
  refuses unless `failCgroupV1: false`; `cgroupDriver: cgroupfs`, the pods under a cgroup of the
  node's own (`/nova-node-<id>`, made in every hierarchy) so that teardown can remove all of it;
- CAP_SYS_RESOURCE is missing, so runc cannot raise oom_score_adj: containerd's
  `restrict_oom_score_adj = true`; swap is allowed (`failSwapOn: false`);
- pods live on the bridge `nova0` (10.88.0.0/24, Debian's CNI bridge + host-local + loopback
  plugins, masquerade off: nothing leaves the machine). The test API server listens on loopback
  only, so the `kubernetes` Service's ClusterIP (10.96.0.1:443, in its serving certificate) is
  DNAT-ed to it with `route_localnet` on the bridge: in-cluster clients (the operator pod) reach the
  API as in a real cluster. That one Service is all: there is no kube-proxy and no cluster DNS, so
  other Services do not resolve or route from pods; pods that need a host service (PostgreSQL)
  are given the bridge address (`Node.host_ip`) and the service must listen there.

Everything the node changes on the host is recorded first and undone at stop() (tests/cluster/host.py):
sysctls (kubelet's vm.overcommit_memory, kernel.panic, kernel.panic_on_oops; the bridge plugin's
ip_forward; route_localnet), iptables chains and rules (v4 and v6), the bridge, network
namespaces, mounts under the node's folders, the cgroup. containerd's root (images and their
unpacked layers) lives in the cache, so an image imported once is there for the next session.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.cluster import controlplane
from tests.cluster.host import HostChanges

HERE = Path(__file__).resolve().parent
IMAGES_SCRIPT = HERE / "images.sh"
RUNTIME_BINARIES = ("containerd", "containerd-shim-runc-v2", "ctr", "runc", "pause")
NODE_BINARIES = ("kubelet", *RUNTIME_BINARIES)
CNI_BIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin")
CNI_PLUGINS = ("bridge", "host-local", "loopback")
BRIDGE = "nova0"
POD_SUBNET = "10.88.0.0/24"
HOST_IP = "10.88.0.1"
K8S_NAMESPACE = "k8s.io"  # containerd namespace of the CRI plugin
# Only pods that ask for the real node land there: the other tests' pods (fake images, kwok's
# exit-code annotation) belong on the kwok nodes.
NODE_LABEL = "nova.dev/real-node"
TAINT = {"key": NODE_LABEL, "value": "true", "effect": "NoSchedule"}
TOLERATION = {"key": NODE_LABEL, "operator": "Equal", "value": "true", "effect": "NoSchedule"}
# sysctls the node's parts change: recorded before the start, restored at stop
HOST_SETTINGS = {
    "sysctls": ["vm.overcommit_memory", "kernel.panic", "kernel.panic_on_oops", "net.ipv4.ip_forward"],
    "kubelet": {"failCgroupV1": False, "cgroupDriver": "cgroupfs", "failSwapOn": False},
    "containerd": {"restrict_oom_score_adj": True},
}


class NodeError(RuntimeError):
    pass


def missing_tools(kubelet: bool = True) -> list[str]:
    """What the host lacks for a real node (or, without `kubelet`, for containerd and the images),
    each with the command that installs it ([] if nothing)."""
    missing = []
    bins = controlplane.bin_dir()
    absent = [b for b in (NODE_BINARIES if kubelet else RUNTIME_BINARIES) if not os.access(bins / b, os.X_OK)]
    if absent:
        missing.append(f"{', '.join(absent)} in {bins} (run tests/cluster/build.sh)")
    if not any(all(Path(d, p).is_file() for p in CNI_PLUGINS) for d in CNI_BIN_DIRS):
        missing.append("the CNI plugins bridge, host-local, loopback (apt-get install containernetworking-plugins)")
    for tool, package in (("iptables", "iptables"), ("ip", "iproute2"), ("buildah", "buildah"),
                          ("mmdebstrap", "mmdebstrap"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            missing.append(f"{tool} (apt-get install {package})")
    if os.geteuid() != 0:
        missing.append("root (kubelet and containerd run as root)")
    return missing


def cni_bin_dir() -> str:
    return next(d for d in CNI_BIN_DIRS if all(Path(d, p).is_file() for p in CNI_PLUGINS))


def node_cache() -> Path:
    return controlplane.cache_dir().parent / "node"


# ------------------------------------------------------------------------------------------ images

@dataclass(frozen=True)
class Images:
    """Refs (tags) of the images built by images.sh, and their archives."""

    base: str
    pause: str
    operator: str
    trainer: str
    archives: dict[str, Path]


def build_images(log=print) -> Images:
    """Run images.sh (a few seconds when nothing changed) and read what it made."""
    started = time.monotonic()
    proc = subprocess.run(["bash", str(IMAGES_SCRIPT)], capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise NodeError(f"images.sh failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    out = Path(subprocess.run(["bash", str(IMAGES_SCRIPT), "--print-dir"], capture_output=True, text=True,
                              check=True).stdout.strip())
    refs, archives = {}, {}
    for name in ("base", "pause", "operator", "trainer"):
        ref, digest = (out / f"{name}.ref").read_text().split()
        refs[name], archives[name] = ref, out / f"{name}-{digest}.tar"
    log(f"images ready in {time.monotonic() - started:.0f} s: {', '.join(refs.values())}")
    return Images(**refs, archives=archives)


# -------------------------------------------------------------------------------------- containerd

def _containerd_config(root: Path, state: Path, cni_conf: Path, pause: str) -> str:
    bins = controlplane.bin_dir()
    return f"""version = 3
root = "{root}"
state = "{state}"
[grpc]
  address = "{state}/containerd.sock"
[plugins."io.containerd.nri.v1.nri"]
  disable = true
[plugins."io.containerd.internal.v1.opt"]
  path = "{root}/opt"
[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{pause}"
[plugins."io.containerd.cri.v1.runtime"]
  restrict_oom_score_adj = {str(HOST_SETTINGS["containerd"]["restrict_oom_score_adj"]).lower()}
  enable_selinux = false
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "{bins / 'runc'}"
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["{cni_bin_dir()}"]
    conf_dir = "{cni_conf}"
    max_conf_num = 1
"""


def _cni_config(work: Path) -> dict:
    return {"cniVersion": "1.0.0", "name": "nova", "plugins": [
        {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False, "hairpinMode": True,
         "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_SUBNET, "gateway": HOST_IP}]],
                  "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(work / "cni-ipam")}},
    ]}


class Containerd:
    """containerd with its root in the cache (flock-ed: one user at a time) and state in `work`."""

    def __init__(self, work: Path, pause: str, changes: HostChanges) -> None:
        self.root = node_cache() / "containerd"
        self.root.mkdir(parents=True, exist_ok=True)
        self.state = work / "containerd-state"
        self.cni_conf = work / "cni"
        self.cni_conf.mkdir(parents=True, exist_ok=True)
        (self.cni_conf / "10-nova.conflist").write_text(json.dumps(_cni_config(work), indent=1))
        self.config = work / "containerd.toml"
        self.config.write_text(_containerd_config(self.root, self.state, self.cni_conf, pause))
        self.log = work / "logs" / "containerd.log"
        self.changes = changes
        changes.mount_roots += [self.root, self.state]
        self.proc: subprocess.Popen | None = None
        self._lock = None

    @property
    def socket(self) -> Path:
        return self.state / "containerd.sock"

    def start(self, timeout: float = 60) -> None:
        import fcntl

        self._lock = open(self.root.parent / "containerd.lock", "w")  # noqa: SIM115 - held until stop
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise NodeError(f"another test session uses {self.root} (lock {self._lock.name})") from None
        bins = controlplane.bin_dir()
        env = {"PATH": f"{bins}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(self.state)}
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([str(bins / "containerd"), "--config", str(self.config)], env=env,
                                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while self.ctr("version", check=False).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise NodeError(f"containerd did not start; {self.log}:\n{_tail(self.log)}")
            time.sleep(0.2)

    def ctr(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(controlplane.bin_dir() / "ctr"), "--address", str(self.socket),
                               "--namespace", K8S_NAMESPACE, *args], capture_output=True, text=True,
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise NodeError(f"ctr {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
        return proc

    def images(self) -> set[str]:
        return set(self.ctr("images", "list", "--quiet").stdout.split())

    def ensure_images(self, images: Images, log=print) -> None:
        """Import the archives whose ref containerd does not have (the root persists in the cache)."""
        have = self.images()
        for name, ref in (("pause", images.pause), ("operator", images.operator), ("trainer", images.trainer)):
            if ref not in have:
                started = time.monotonic()
                self.ctr("images", "import", "--local", str(images.archives[name]))
                log(f"imported {ref} into containerd in {time.monotonic() - started:.0f} s")
        current = {images.pause, images.operator, images.trainer}
        missing = current - self.images()
        if missing:
            raise NodeError(f"containerd lacks {missing} after the import")
        # older builds of these images go (containerd's garbage collector then frees their layers)
        stale = [ref for ref in self.images() - current
                 if ref.startswith(("localhost/nova-", "localhost/pause:"))]
        if stale:
            self.ctr("images", "remove", *stale)

    def remove_all(self) -> None:
        """Kill and delete every task and container in the CRI namespace (what kubelet left)."""
        for task in self.ctr("tasks", "list", "--quiet", check=False).stdout.split():
            self.ctr("tasks", "kill", "--signal", "SIGKILL", task, check=False)
        time.sleep(0.5)
        for task in self.ctr("tasks", "list", "--quiet", check=False).stdout.split():
            self.ctr("tasks", "delete", "--force", task, check=False)
        for c in self.ctr("containers", "list", "--quiet", check=False).stdout.split():
            self.ctr("containers", "delete", c, check=False)

    def stop(self) -> None:
        try:
            if self.proc and self.proc.poll() is None:
                self.remove_all()
                _stop(self.proc)
        finally:
            _kill_shims()
            if self._lock:
                self._lock.close()
                self._lock = None


def _kill_shims() -> None:
    """containerd-shim-runc-v2 processes of our binary (they outlive containerd by design)."""
    shim = str(controlplane.bin_dir() / "containerd-shim-runc-v2")
    for pid in _pids_of(shim):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _pids_of(exe: str) -> list[int]:
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if os.readlink(p / "exe") == exe:
                    pids.append(int(p.name))
            except OSError:
                continue
    return pids


def _stop(proc: subprocess.Popen, grace: float = 15) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


# ----------------------------------------------------------------------------------------- kubelet

def _node_client_cert(cp: controlplane.ControlPlane, node: str, d: Path) -> tuple[Path, Path]:
    """A client certificate for system:node:<node> (group system:nodes) from the test CA, as
    kubelet's TLS bootstrap would get: the Node authorizer then limits it to its own pods."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert = x509.load_pem_x509_certificate(cp.pki["ca"].read_bytes())
    ca_key = serialization.load_pem_private_key(cp.pki["ca_key"].read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
                                     x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{node}")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=7))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    crt, pem = d / "kubelet-client.crt", d / "kubelet-client.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    pem.chmod(0o600)
    return crt, pem


def _kubelet_config(work: Path, cgroup_root: str, port: int, healthz: int) -> dict:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        **HOST_SETTINGS["kubelet"],
        "cgroupRoot": cgroup_root, "cgroupsPerQOS": True, "enforceNodeAllocatable": ["pods"],
        "containerRuntimeEndpoint": f"unix://{work / 'containerd-state' / 'containerd.sock'}",
        "address": HOST_IP, "port": port, "readOnlyPort": 0, "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz,
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(work / "pki" / "ca.crt")}},
        "authorization": {"mode": "Webhook"},
        "podLogsDir": str(work / "pod-logs"),
        "staticPodPath": "", "registerNode": True, "serializeImagePulls": False,
        "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "nodeStatusUpdateFrequency": "4s", "syncFrequency": "10s", "fileCheckFrequency": "10s",
        "localStorageCapacityIsolation": True, "makeIPTablesUtilChains": True,
        "resolvConf": "/etc/resolv.conf", "hairpinMode": "hairpin-veth",
        "protectKernelDefaults": False, "maxPods": 30, "shutdownGracePeriod": "0s",
        "registerWithTaints": [TAINT],
    }


@dataclass
class Runtime:
    """containerd with Nova's images imported, in a work folder of its own, and the record of every
    host change made from its start on; stop() undoes them and returns what it could not."""

    work: Path
    images: Images
    changes: HostChanges
    containerd: Containerd
    cgroup_root: str = ""

    @property
    def logs(self) -> Path:
        return self.work / "logs"

    def run(self, image: str, *argv: str, mounts: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
        """One container to its end as uid 1000 on a read-only root (no network): a smoke test."""
        cid = f"smoke-{uuid.uuid4().hex[:8]}"
        flags = ["--rm", "--read-only", "--user", "1000:1000", "--cgroup", f"{self.cgroup_root}/{cid}"]
        for src, dst in (mounts or {}).items():
            flags += ["--mount", f"type=bind,src={src},dst={dst},options=rbind:ro"]
        return self.containerd.ctr("run", *flags, image, cid, *argv, check=False, timeout=timeout)

    def stop(self) -> list[str]:
        problems: list[str] = []
        try:
            self.containerd.stop()
        except Exception as exc:  # noqa: BLE001 - the undo below runs regardless
            problems.append(f"containerd stop: {exc!r}")
        left = [pid for exe in ("kubelet", "containerd", "containerd-shim-runc-v2", "runc")
                for pid in _pids_of(str(controlplane.bin_dir() / exe))]
        if left:
            problems.append(f"node processes still alive: {left}")
        problems += self.changes.undo()
        if not problems:
            shutil.rmtree(self.work, ignore_errors=True)
        return problems


def start_runtime(images: Images, log=print) -> Runtime:
    """containerd up with the images imported; the host snapshot taken first. On failure, undone."""
    missing = missing_tools(kubelet=False)
    if missing:
        raise NodeError("cannot start containerd; missing: " + "; ".join(missing))
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="nova-node-", dir="/var/tmp"))
    (work / "logs").mkdir()
    changes = HostChanges(mount_roots=[work], links=[BRIDGE])
    changes.snapshot(HOST_SETTINGS["sysctls"])
    containerd = Containerd(work, images.pause, changes)
    rt = Runtime(work, images, changes, containerd)
    try:
        rt.cgroup_root = changes.make_cgroup(f"nova-node-{uuid.uuid4().hex[:6]}")
        containerd.start()
        containerd.ensure_images(images, log=log)
    except BaseException:
        problems = rt.stop()
        if problems:
            log(f"teardown after a failed start left: {problems}")
        raise
    log(f"containerd up with Nova's images in {time.monotonic() - started:.0f} s (work {work})")
    return rt


@dataclass
class Node:
    """A kubelet node joined to `cp` on `runtime`; stop() stops kubelet and removes the Node object
    (the runtime's stop() then removes the containers and undoes the host changes)."""

    cp: controlplane.ControlPlane
    name: str
    runtime: Runtime
    kubelet: subprocess.Popen | None = None
    host_ip: str = HOST_IP
    forwarders: list[Forwarder] = field(default_factory=list)
    kubelet_argv: list[str] = field(default_factory=list)

    def forward(self, port: int) -> int:
        """A port on the bridge address (`host_ip`) that pods connect to, forwarded to 127.0.0.1:`port`
        (the test PostgreSQL listens on loopback only, and sees the connection come from there)."""
        fwd = Forwarder(HOST_IP, port)
        self.forwarders.append(fwd)
        return fwd.port

    @property
    def work(self) -> Path:
        return self.runtime.work

    @property
    def images(self) -> Images:
        return self.runtime.images

    def pod_log(self, namespace: str, pod: str, container: str) -> str:
        """The container's output from kubelet's log folder (every restart, oldest first), as the
        container wrote it: the CRI log format's time, stream and tag taken off each line."""
        files = sorted(self.work.glob(f"pod-logs/{namespace}_{pod}_*/{container}/*.log"))
        return "".join(cri_log_text(f.read_text(errors="replace")) for f in files)

    def diagnose(self) -> str:
        logs = self.runtime.logs
        return (f"--- kubelet ({logs / 'kubelet.log'}):\n{_tail(logs / 'kubelet.log', 30)}\n"
                f"--- containerd:\n{_tail(self.runtime.containerd.log, 15)}")

    def start_kubelet(self, timeout: float = 180) -> None:
        """kubelet (again) with the node's flags; returns once the Node is Ready."""
        bins = controlplane.bin_dir()
        with open(self.runtime.logs / "kubelet.log", "ab") as out:
            self.kubelet = subprocess.Popen(self.kubelet_argv, env={"PATH": f"{bins}:/usr/sbin:/usr/bin:/sbin:/bin"},
                                            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.kubelet.poll() is not None:
                raise NodeError(f"kubelet exited with {self.kubelet.returncode}\n{self.diagnose()}")
            status, body = self.cp.get(f"/api/v1/nodes/{self.name}")
            if status == 200 and _ready(json.loads(body)):
                return
            if time.monotonic() > deadline:
                raise NodeError(f"node {self.name} not Ready after {timeout:.0f} s\n{self.diagnose()}")
            time.sleep(0.5)

    def lose(self) -> None:
        """The machine gone at once, as when a node dies: kubelet SIGKILLed and every container
        killed (nothing on it gets a SIGTERM, nothing reports back; containerd itself stays, holding
        the dead tasks, as after a reboot). The Node object stays, NotReady later, until someone
        deletes it; `start_kubelet()` brings the machine back."""
        if self.kubelet and self.kubelet.poll() is None:
            os.killpg(self.kubelet.pid, signal.SIGKILL)
            self.kubelet.wait(10)
        containerd = self.runtime.containerd
        for task in containerd.ctr("tasks", "list", "--quiet", check=False).stdout.split():
            containerd.ctr("tasks", "kill", "--signal", "SIGKILL", task, check=False)

    def stop(self) -> list[str]:
        problems: list[str] = []
        try:
            self.cp.kubectl("delete", "node", self.name, "--ignore-not-found", "--wait=false", check=False)
        except Exception as exc:  # noqa: BLE001 - the control plane may be gone already
            problems.append(f"delete node: {exc!r}")
        if self.kubelet and self.kubelet.poll() is None:
            _stop(self.kubelet)
        for fwd in self.forwarders:
            fwd.close()
        return problems


def start_node(cp: controlplane.ControlPlane, runtime: Runtime, log=print, timeout: float = 180) -> Node:
    """kubelet on `runtime`, registered with a node client certificate and Ready."""
    missing = missing_tools()
    if missing:
        raise NodeError("cannot start a real node; missing: " + "; ".join(missing))
    started = time.monotonic()
    name = "nova-node"
    work = runtime.work
    (work / "pki").mkdir(exist_ok=True)
    shutil.copy(cp.pki["ca"], work / "pki" / "ca.crt")
    node = Node(cp, name, runtime)
    try:
        _make_bridge(runtime.changes)
        _route_kubernetes_service(node)
        crt, key = _node_client_cert(cp, name, work / "pki")
        kubeconfig = work / "kubelet.kubeconfig"
        kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "node",
            "clusters": [{"name": "c", "cluster": {"server": cp.api_url, "certificate-authority": str(cp.pki["ca"])}}],
            "users": [{"name": "node", "user": {"client-certificate": str(crt), "client-key": str(key)}}],
            "contexts": [{"name": "node", "context": {"cluster": "c", "user": "node"}}]}))
        port, healthz = controlplane.free_ports(2)
        config = work / "kubelet.yaml"
        config.write_text(yaml.safe_dump(_kubelet_config(work, runtime.cgroup_root, port, healthz)))
        bins = controlplane.bin_dir()
        node.kubelet_argv = [
            str(bins / "kubelet"), f"--config={config}", f"--kubeconfig={kubeconfig}",
            f"--root-dir={work / 'kubelet'}", f"--hostname-override={name}", f"--node-ip={HOST_IP}", "--v=1",
            f"--cert-dir={work / 'pki'}", f"--node-labels={NODE_LABEL}=true"]
        node.start_kubelet(timeout)
    except BaseException:
        node.stop()
        raise
    log(f"real node {name} Ready in {time.monotonic() - started:.0f} s")
    return node


def cri_log_text(raw: str) -> str:
    """What a container wrote, from kubelet's CRI log lines `<time> <stream> <P|F> <text>`: a
    partial line (P) continues on the next record; a full one (F) ends with a newline."""
    out = []
    for line in raw.splitlines():
        parts = line.split(" ", 3)
        if len(parts) < 3:
            continue
        text = parts[3] if len(parts) == 4 else ""
        out.append(text if parts[2] == "P" else text + "\n")
    return "".join(out)


def _ready(node: dict) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or []
    taints = (node.get("spec") or {}).get("taints") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions) and \
        not any(t["key"] == "node.kubernetes.io/not-ready" for t in taints)


def _route_kubernetes_service(node: Node) -> None:
    """10.96.0.1:443 (the `kubernetes` Service) -> the API server on loopback, for pods on the bridge.

    The bridge exists once the first pod is set up; route_localnet is set on every interface
    (`all`) for that reason, and the DNAT rule lives in a chain of the node's own, named afresh each
    time: a run killed before its undo leaves its chain behind, and the next node's rule goes first."""
    port = int(node.cp.api_url.rsplit(":", 1)[1])
    node.runtime.changes.set_sysctl("net.ipv4.conf.all.route_localnet", "1")
    chain = f"NOVA-NODE-API-{uuid.uuid4().hex[:6].upper()}"
    for args in (["-t", "nat", "-N", chain],
                 ["-t", "nat", "-A", chain, "-d", f"{controlplane.SERVICE_IP}/32", "-p", "tcp", "--dport", "443",
                  "-j", "DNAT", "--to-destination", f"127.0.0.1:{port}"],
                 ["-t", "nat", "-I", "PREROUTING", "-s", POD_SUBNET, "-j", chain]):
        proc = subprocess.run(["iptables", "-w", "5", *args], capture_output=True, text=True)
        if proc.returncode != 0:
            raise NodeError(f"iptables {' '.join(args)}: {proc.stderr.strip()}")


def _make_bridge(changes: HostChanges) -> None:
    """The CNI bridge, made before kubelet (the bridge plugin adopts it) so that its address exists
    for forwarders from the start; removed by the host record (HostChanges.links)."""
    if not Path(f"/sys/class/net/{BRIDGE}").exists():
        for args in (["link", "add", BRIDGE, "type", "bridge"],
                     ["addr", "add", f"{HOST_IP}/{POD_SUBNET.split('/')[1]}", "dev", BRIDGE],
                     ["link", "set", BRIDGE, "up"]):
            proc = subprocess.run(["ip", *args], capture_output=True, text=True)
            if proc.returncode != 0:
                raise NodeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")


class Forwarder:
    """TCP from (host, free port) to 127.0.0.1:target, one thread per connection direction."""

    def __init__(self, host: str, target: int) -> None:
        self.target = target
        self.server = socket.create_server((host, 0))
        self.port = self.server.getsockname()[1]
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True, name=f"forward-{self.port}").start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self.server.accept()
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=10)
                upstream.settimeout(None)
            except OSError:
                if self._closed.is_set():
                    return
                continue
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._closed.set()
        self.server.close()
