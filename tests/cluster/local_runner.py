"""A test-only node agent that runs pods as local processes.

THIS IS A STAND-IN FOR KUBELET AND A CONTAINER RUNTIME, for tests only. It serves one Node that
kwok does not manage (default ``local-runner``, label ``nova.dev/local-runner=true``, taint
``nova.dev/local-runner=true:NoSchedule`` so only pods that tolerate it are scheduled there). The
real scheduler binds pods to it; this runner then executes their containers as plain processes on
this machine and reports their real exit codes through the pods' status subresource.

Why it is still here, next to the real node (tests/cluster/node.py, kubelet + containerd running
Nova's images): the operator, e2e and reliability suites that use it predate that node and have not
been moved yet; they need no image build and start in seconds. The chart install, a run to
Succeeded and the operator-kill / deleted-pod faults already run on the real node
(tests/cluster/test_real_node.py). Moving the rest and then removing this runner is what is left.

What it does, like kubelet:
- registers the Node (capacity cpu/memory/pods, Ready condition, InternalIP 127.0.0.1) and renews
  its Lease in kube-node-lease and its Ready heartbeat, so the node lifecycle controller keeps it;
- watches pods bound to the node; runs regular initContainers one by one to completion, starts
  native sidecars (initContainers with ``restartPolicy: Always``) before the main containers and
  SIGTERMs them once the main containers are done; restarts per the pod's restartPolicy;
- environment: ``env`` (value, valueFrom configMapKeyRef / secretKeyRef / fieldRef for
  metadata.name, metadata.namespace, metadata.uid, metadata.labels/annotations['k'] (so
  ``batch.kubernetes.io/job-completion-index`` works), spec.nodeName, spec.serviceAccountName,
  status.podIP, status.hostIP), ``envFrom`` (configMapRef/secretRef with prefix), ``$(VAR)``
  expansion in command/args/env, KUBERNETES_SERVICE_HOST/PORT pointing at the test API server;
- volumes: ConfigMap and Secret (items, optional), emptyDir (a fresh folder), downwardAPI and
  projected volumes (configMap, secret, downwardAPI, serviceAccountToken through TokenRequest);
- status: phase, startTime, podIP/hostIP 127.0.0.1, conditions PodScheduled / Initialized /
  ContainersReady / Ready, containerStatuses and initContainerStatuses with waiting / running /
  terminated (exitCode, reason Completed / Error / StartError, 128+signal when killed);
- deletion: SIGTERM to each container's process group, SIGKILL after the grace period, then the
  final delete with grace period 0 (as kubelet does; finalizers are left to their owners).

What it does NOT do (say so rather than pretend): images are ignored; ``command`` must name a
program on this machine (``python`` resolves to this virtualenv's interpreter, whose bin folder is
first on PATH); no isolation, no resource limits, no probes, no networking (podIP is 127.0.0.1), no
``kubectl logs``/``exec`` (read the log files instead: :meth:`LocalRunner.log_path`).

Mount paths: a process cannot see ``/work/features`` without a mount namespace, so each volume
lives in a folder under the pod's own folder and **every occurrence of a container's mountPath at
the start of a path in its command, args and env values is rewritten to that folder** (longest
mountPath first; ``workingDir`` too). A program that only finds a mount through a hard-coded path
that never appears in its command line or environment will not see it; the container also gets
``NOVA_LOCAL_RUNNER_MOUNTS`` (JSON: mountPath -> folder) to look such paths up.

Run it in-process (``LocalRunner(...).start()`` runs in threads) or as a subprocess::

    python -m tests.cluster.local_runner --kubeconfig K --root DIR [--node-name local-runner]
"""

from __future__ import annotations

import argparse
import base64
import ctypes
import datetime as dt
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("nova.local_runner")

NODE_NAME = "local-runner"
NODE_LABEL = "nova.dev/local-runner"
TAINT = {"key": NODE_LABEL, "value": "true", "effect": "NoSchedule"}
TOLERATION = {"key": NODE_LABEL, "operator": "Equal", "value": "true", "effect": "NoSchedule"}
LEASE_SECONDS = 40
HEARTBEAT_SECONDS = 5


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _micro_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_LIBC = ctypes.CDLL("libc.so.6", use_errno=True)  # loaded here: no dlopen between fork and exec


def _set_pdeathsig() -> None:  # runs in the child between fork and exec
    _LIBC.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the thread that started us


def _exit_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


class PodSetupError(Exception):
    """Something kubelet would keep retrying (missing ConfigMap/Secret): the pod stays Pending."""


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen | None = None
    started_at: str | None = None
    finished_at: str | None = None
    exit_code: int | None = None
    reason: str | None = None
    message: str | None = None
    restarts: int = 0
    waiting_reason: str = "ContainerCreating"
    waiting_message: str | None = None

    def status(self, spec: dict, ready_when_running: bool = True) -> dict:
        s = {"name": self.name, "image": spec.get("image") or "local", "imageID": "",
             "containerID": f"local://{self.popen.pid}" if self.popen else None,
             "restartCount": self.restarts, "ready": False, "started": False}
        if self.exit_code is not None and (self.popen is None or self.popen.poll() is not None):
            term = {"exitCode": self.exit_code, "reason": self.reason or ("Completed" if self.exit_code == 0
                                                                         else "Error"),
                    "startedAt": self.started_at or self.finished_at, "finishedAt": self.finished_at}
            if self.message:
                term["message"] = self.message
            s["state"] = {"terminated": term}
        elif self.popen is not None:
            s["state"] = {"running": {"startedAt": self.started_at}}
            s["ready"] = ready_when_running
            s["started"] = True
        else:
            s["state"] = {"waiting": {"reason": self.waiting_reason}}
            if self.waiting_message:
                s["state"]["waiting"]["message"] = self.waiting_message
        if s["containerID"] is None:
            del s["containerID"]
        return s


@dataclass
class PodWorker:
    runner: LocalRunner
    pod: dict
    dir: Path
    stop_event: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    init: dict[str, Proc] = field(default_factory=dict)
    main: dict[str, Proc] = field(default_factory=dict)
    phase: str = "Pending"
    start_time: str | None = None
    initialized: bool = False
    mounts_by_container: dict[str, dict[str, str]] = field(default_factory=dict)
    finished: bool = False
    delete_grace: float | None = None  # set when the pod is being deleted: kill with this grace, then delete
    forgotten: bool = False  # the pod is gone from the API: just kill
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def ns(self) -> str:
        return self.pod["metadata"]["namespace"]

    @property
    def name(self) -> str:
        return self.pod["metadata"]["name"]

    @property
    def uid(self) -> str:
        return self.pod["metadata"]["uid"]

    # ------------------------------------------------------------------------------ life cycle
    def run(self) -> None:
        # Containers are killed from this thread only: they carry PR_SET_PDEATHSIG, which fires when
        # the thread that forked them ends, so this thread outlives every container it starts.
        try:
            self._run()
        except Exception:  # noqa: BLE001 - a runner bug must show up in the pod, not vanish
            log.exception("pod %s/%s: runner error", self.ns, self.name)
            self.kill_all(0)
            self.phase = "Failed"
            self.report(message="local runner error (see the runner log)", reason="LocalRunnerError")
        finally:
            if self.stop_event.is_set():
                grace = self.delete_grace if self.delete_grace is not None else self.runner.stop_grace
                self.kill_all(0 if self.forgotten else grace)
            self.finished = True
            if self.delete_grace is not None and not self.forgotten:
                self.runner.finish_deletion(self)

    def _run(self) -> None:
        spec = self.pod["spec"]
        self.start_time = now()
        for c in spec.get("initContainers") or []:
            self.init[c["name"]] = Proc(c["name"], waiting_reason="PodInitializing")
        for c in spec["containers"]:
            self.main[c["name"]] = Proc(c["name"], waiting_reason="PodInitializing" if self.init
                                        else "ContainerCreating")
        self.report()
        while not self.stop_event.is_set():  # volumes; kubelet retries mounts while the pod waits
            try:
                self.prepare_volumes()
                break
            except PodSetupError as exc:  # kubelet: an event FailedMount, containers stay ContainerCreating
                for proc in list(self.init.values()) + list(self.main.values()):
                    proc.waiting_message = f"MountVolume.SetUp failed: {exc}"
                self.report()
                self.stop_event.wait(1.0)
        for proc in list(self.init.values()) + list(self.main.values()):
            proc.waiting_message = None
        restart_policy = spec.get("restartPolicy", "Always")
        # init containers: sidecars start and stay; regular ones run to completion, in order
        for c in spec.get("initContainers") or []:
            if self.stop_event.is_set():
                return
            proc = self.init[c["name"]]
            if c.get("restartPolicy") == "Always":
                self.start_container(c, proc)
                self.report()
                continue
            while not self.stop_event.is_set():
                self.start_container(c, proc)
                self.report()
                self.wait_proc(proc)
                if self.stop_event.is_set():
                    return
                self.report()
                if proc.exit_code == 0:
                    break
                if restart_policy == "Never":
                    self.phase = "Failed"
                    self.stop_sidecars(spec)
                    self.report()
                    return
                proc.restarts += 1
                self.stop_event.wait(min(10.0, 0.5 * proc.restarts))
        self.initialized = True
        for c in spec["containers"]:
            if not self.stop_event.is_set():
                self.start_container(c, self.main[c["name"]])
        self.phase = "Running"
        self.report()
        containers = {c["name"]: c for c in spec["containers"]}
        sidecars = {c["name"]: c for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"}
        done: set[str] = set()
        while not self.stop_event.is_set() and len(done) < len(containers):
            changed = False
            for name, proc in self.main.items():
                if name in done or proc.popen is None or proc.popen.poll() is None:
                    continue
                self.record_exit(proc)
                changed = True
                if restart_policy == "Always" or (restart_policy == "OnFailure" and proc.exit_code != 0):
                    proc.restarts += 1
                    self.report()
                    self.stop_event.wait(min(10.0, 0.5 * proc.restarts))
                    self.start_container(containers[name], proc)
                else:
                    done.add(name)
            for name, proc in self.init.items():  # a sidecar that dies is restarted, as kubelet does
                if name in sidecars and proc.popen is not None and proc.popen.poll() is not None:
                    self.record_exit(proc)
                    proc.restarts += 1
                    self.start_container(sidecars[name], proc)
                    changed = True
            if changed:
                self.report()
            self.stop_event.wait(0.1)
        if self.stop_event.is_set():
            return
        self.phase = "Succeeded" if all(p.exit_code == 0 for p in self.main.values()) else "Failed"
        self.stop_sidecars(spec)
        self.report()

    def stop_sidecars(self, spec: dict) -> None:
        grace = spec.get("terminationGracePeriodSeconds", 30)
        for c in reversed(spec.get("initContainers") or []):
            proc = self.init.get(c["name"])
            if c.get("restartPolicy") == "Always" and proc and proc.popen and proc.popen.poll() is None:
                self.terminate(proc, grace)

    def kill_all(self, grace: float) -> None:
        for proc in list(self.main.values()) + list(reversed(self.init.values())):
            if proc.popen is not None and proc.popen.poll() is None:
                self.terminate(proc, grace)

    def terminate(self, proc: Proc, grace: float) -> None:
        try:
            os.killpg(proc.popen.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.popen.wait(timeout=max(grace, 0.1))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.popen.wait()
        self.record_exit(proc)
        try:  # whatever the container forked into its group
            os.killpg(proc.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def wait_proc(self, proc: Proc) -> None:
        while proc.popen is not None and proc.popen.poll() is None and not self.stop_event.is_set():
            time.sleep(0.05)
        if proc.popen is not None and proc.popen.poll() is not None:
            self.record_exit(proc)

    def record_exit(self, proc: Proc) -> None:
        rc = proc.popen.poll() if proc.popen is not None else None
        if rc is None:
            return
        proc.exit_code = _exit_code(rc)
        proc.reason = "Completed" if proc.exit_code == 0 else "Error"
        proc.finished_at = proc.finished_at or now()

    # ------------------------------------------------------------------------------- containers
    def start_container(self, c: dict, proc: Proc) -> None:
        proc.exit_code = proc.reason = proc.message = proc.finished_at = None
        proc.popen = None
        while True:  # as kubelet: a missing ConfigMap/Secret (key) keeps the container waiting, retried
            try:
                env = self.container_env(c)
                break
            except PodSetupError as exc:
                proc.waiting_reason, proc.waiting_message = "CreateContainerConfigError", str(exc)
                self.report()
                if self.stop_event.wait(1.0):
                    return
        proc.waiting_message = None
        proc.started_at = now()
        try:
            mounts = self.mounts_by_container.get(c["name"], {})
            argv = [self.remap(_expand(a, env), mounts) for a in (c.get("command") or []) + (c.get("args") or [])]
            if not c.get("command"):
                raise OSError("the local runner needs an explicit `command` (images are not run)")
            cwd = self.remap(c["workingDir"], mounts) if c.get("workingDir") else str(self.dir)
            Path(cwd).mkdir(parents=True, exist_ok=True)
            exe = shutil.which(argv[0], path=env.get("PATH")) if "/" not in argv[0] else argv[0]
            if exe is None:
                raise FileNotFoundError(f"executable not found: {argv[0]}")
            logf = open(self.runner.log_path(self.ns, self.name, c["name"]), "ab")  # noqa: SIM115
            try:
                proc.popen = subprocess.Popen([exe, *argv[1:]], env=env, cwd=cwd, stdout=logf,
                                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                              start_new_session=True, preexec_fn=_set_pdeathsig)
            finally:
                logf.close()
            self.runner.pids.add(proc.popen.pid)
        except (OSError, KeyError, ValueError) as exc:
            proc.exit_code, proc.reason, proc.message = 128, "StartError", str(exc)
            proc.finished_at = now()
            with open(self.runner.log_path(self.ns, self.name, c["name"]), "a") as f:
                f.write(f"[local-runner] could not start: {exc}\n")

    def container_env(self, c: dict) -> dict[str, str]:
        r = self.runner
        env = {"PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
               "HOME": str(self.dir / "home"), "TMPDIR": str(self.dir / "tmp"), "HOSTNAME": self.name,
               "KUBERNETES_SERVICE_HOST": r.api_host, "KUBERNETES_SERVICE_PORT": str(r.api_port),
               "KUBERNETES_SERVICE_PORT_HTTPS": str(r.api_port)}
        for k in r.pass_env:
            if k in os.environ:
                env[k] = os.environ[k]
        for k in ("home", "tmp"):
            (self.dir / k).mkdir(exist_ok=True)
        for src in c.get("envFrom") or []:
            prefix = src.get("prefix", "")
            if "configMapRef" in src:
                data = self.configmap(src["configMapRef"]["name"], src["configMapRef"].get("optional", False))
            else:
                data = self.secret(src["secretRef"]["name"], src["secretRef"].get("optional", False))
            for k, v in (data or {}).items():
                env[prefix + k] = v
        for e in c.get("env") or []:
            if "valueFrom" not in e:
                env[e["name"]] = _expand(e.get("value", ""), env)
                continue
            vf = e["valueFrom"]
            value = None
            if "configMapKeyRef" in vf:
                ref = vf["configMapKeyRef"]
                value = (self.configmap(ref["name"], ref.get("optional", False)) or {}).get(ref["key"])
                if value is None and not ref.get("optional"):
                    raise PodSetupError(f"couldn't find key {ref['key']} in ConfigMap {self.ns}/{ref['name']}")
            elif "secretKeyRef" in vf:
                ref = vf["secretKeyRef"]
                value = (self.secret(ref["name"], ref.get("optional", False)) or {}).get(ref["key"])
                if value is None and not ref.get("optional"):
                    raise PodSetupError(f"couldn't find key {ref['key']} in Secret {self.ns}/{ref['name']}")
            elif "fieldRef" in vf:
                value = self.field(vf["fieldRef"]["fieldPath"])
            elif "resourceFieldRef" in vf:
                value = "0"
            if value is not None:
                env[e["name"]] = value
        mounts = self.mounts_by_container.get(c["name"], {})
        env = {k: self.remap(v, mounts) for k, v in env.items()}
        env["NOVA_LOCAL_RUNNER_MOUNTS"] = json.dumps(mounts)
        return env

    def field(self, path: str) -> str:
        md = self.pod["metadata"]
        m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
        if m:
            return (md.get(m.group(1)) or {}).get(m.group(2), "")
        return {"metadata.name": md["name"], "metadata.namespace": md["namespace"], "metadata.uid": md["uid"],
                "spec.nodeName": self.runner.node_name,
                "spec.serviceAccountName": self.pod["spec"].get("serviceAccountName", "default"),
                "status.podIP": "127.0.0.1", "status.hostIP": "127.0.0.1",
                "status.podIPs": "127.0.0.1", "status.hostIPs": "127.0.0.1"}.get(path, "")

    def remap(self, value: str, mounts: dict[str, str]) -> str:
        for mount in sorted(mounts, key=len, reverse=True):
            value = re.sub(rf"(?<![\w./-]){re.escape(mount.rstrip('/'))}(?=/|$|[^\w.-])",
                           lambda _m, m=mount: mounts[m], value)
        return value

    # ---------------------------------------------------------------------------------- volumes
    def configmap(self, name: str, optional: bool) -> dict[str, str] | None:
        from kubernetes.client.rest import ApiException

        try:
            cm = self.runner.core.read_namespaced_config_map(name, self.ns)
        except ApiException as exc:
            if exc.status == 404:
                if optional:
                    return None
                raise PodSetupError(f'configmap "{name}" not found') from exc
            raise
        out = dict(cm.data or {})
        for k, v in (cm.binary_data or {}).items():
            out[k] = base64.b64decode(v).decode(errors="replace")
        return out

    def secret(self, name: str, optional: bool, raw: bool = False) -> dict | None:
        from kubernetes.client.rest import ApiException

        try:
            s = self.runner.core.read_namespaced_secret(name, self.ns)
        except ApiException as exc:
            if exc.status == 404:
                if optional:
                    return None
                raise PodSetupError(f'secret "{name}" not found') from exc
            raise
        data = {k: base64.b64decode(v) for k, v in (s.data or {}).items()}
        return data if raw else {k: v.decode(errors="replace") for k, v in data.items()}

    def prepare_volumes(self) -> None:
        vols = self.dir / "volumes"
        paths: dict[str, Path] = {}
        for v in self.pod["spec"].get("volumes") or []:
            d = vols / v["name"]
            d.mkdir(parents=True, exist_ok=True)
            paths[v["name"]] = d
            if "configMap" in v:
                src = v["configMap"]
                data = self.configmap(src["name"], src.get("optional", False)) or {}
                _write_items(d, {k: x.encode() for k, x in data.items()}, src.get("items"))
            elif "secret" in v:
                src = v["secret"]
                data = self.secret(src["secretName"], src.get("optional", False), raw=True) or {}
                _write_items(d, data, src.get("items"))
            elif "downwardAPI" in v:
                self.write_downward(d, v["downwardAPI"].get("items") or [])
            elif "projected" in v:
                for source in v["projected"].get("sources") or []:
                    if "configMap" in source:
                        src = source["configMap"]
                        data = self.configmap(src["name"], src.get("optional", False)) or {}
                        _write_items(d, {k: x.encode() for k, x in data.items()}, src.get("items"))
                    elif "secret" in source:
                        src = source["secret"]
                        data = self.secret(src["name"], src.get("optional", False), raw=True) or {}
                        _write_items(d, data, src.get("items"))
                    elif "downwardAPI" in source:
                        self.write_downward(d, source["downwardAPI"].get("items") or [])
                    elif "serviceAccountToken" in source:
                        token = source["serviceAccountToken"]
                        (d / token["path"]).write_text(self.token(token))
            # emptyDir (and anything else: hostPath, PVCs) is a fresh empty folder
        for c in (self.pod["spec"].get("initContainers") or []) + self.pod["spec"]["containers"]:
            mounts = {}
            for m in c.get("volumeMounts") or []:
                if m["name"] not in paths:
                    continue
                target = paths[m["name"]] / m["subPath"] if m.get("subPath") else paths[m["name"]]
                if m.get("subPath") and not target.exists():
                    target.mkdir(parents=True, exist_ok=True)
                mounts[m["mountPath"].rstrip("/") or "/"] = str(target)
            self.mounts_by_container[c["name"]] = mounts

    def write_downward(self, d: Path, items: list[dict]) -> None:
        for item in items:
            if "fieldRef" in item:
                path = item["fieldRef"]["fieldPath"]
                md = self.pod["metadata"]
                if path in ("metadata.labels", "metadata.annotations"):
                    kv = md.get(path.split(".")[1]) or {}
                    value = "\n".join(f'{k}="{v}"' for k, v in sorted(kv.items()))
                else:
                    value = self.field(path)
                (d / item["path"]).parent.mkdir(parents=True, exist_ok=True)
                (d / item["path"]).write_text(value)

    def token(self, src: dict) -> str:
        from kubernetes import client

        body = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(
            audiences=[src["audience"]] if src.get("audience") else [],
            expiration_seconds=src.get("expirationSeconds", 3600),
            bound_object_ref=client.V1BoundObjectReference(kind="Pod", api_version="v1", name=self.name,
                                                           uid=self.uid)))
        sa = self.pod["spec"].get("serviceAccountName") or "default"
        return self.runner.core.create_namespaced_service_account_token(sa, self.ns, body).status.token

    # ----------------------------------------------------------------------------------- status
    def report(self, message: str | None = None, reason: str | None = None) -> None:
        with self.lock:
            spec = self.pod["spec"]
            t = now()
            init_specs = {c["name"]: c for c in spec.get("initContainers") or []}
            main_specs = {c["name"]: c for c in spec["containers"]}
            main = [self.main[n].status(main_specs[n]) for n in main_specs]
            init = []
            for n, c in init_specs.items():
                st = self.init[n].status(c)
                if c.get("restartPolicy") != "Always":
                    st["ready"] = st["state"].get("terminated", {}).get("exitCode") == 0
                init.append(st)
            terminal = self.phase in ("Succeeded", "Failed")
            sidecars_ok = all(s["ready"] for s, c in zip(init, init_specs.values(), strict=True)
                              if c.get("restartPolicy") == "Always")
            ready = not terminal and self.initialized and all(s["ready"] for s in main) and sidecars_ok
            why = "PodCompleted" if terminal else "ContainersNotReady"

            def cond(kind: str, ok: bool, why_not: str | None = None) -> dict:
                c = {"type": kind, "status": "True" if ok else "False", "lastProbeTime": None,
                     "lastTransitionTime": t}
                if not ok and why_not:
                    c["reason"] = why_not
                return c

            status = {
                "phase": self.phase, "hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}],
                "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}], "startTime": self.start_time,
                "conditions": [cond("PodReadyToStartContainers", True),
                               cond("Initialized", self.initialized or terminal, "ContainersNotInitialized"),
                               cond("Ready", ready, why), cond("ContainersReady", ready, why),
                               cond("PodScheduled", True)],
                "containerStatuses": main, "initContainerStatuses": init,
            }
            status["message"] = message
            status["reason"] = reason
            self.runner.patch_status(self, status)


def _write_items(d: Path, data: dict[str, bytes], items: list[dict] | None) -> None:
    pairs = [(i["key"], i["path"]) for i in items] if items else [(k, k) for k in data]
    for key, path in pairs:
        if key in data:
            (d / path).parent.mkdir(parents=True, exist_ok=True)
            (d / path).write_bytes(data[key])


def _expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: defined names are replaced, $$ escapes, others stay as written."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), value)


class LocalRunner:
    """Serve one Node: register it, keep it alive, run the pods bound to it (see the module docstring)."""

    def __init__(self, kubeconfig: str | Path, root: str | Path, node_name: str = NODE_NAME,
                 capacity: dict[str, str] | None = None, labels: dict[str, str] | None = None,
                 taints: list[dict] | None = None, pass_env: tuple[str, ...] = ("PYTHONPATH", "LANG", "LC_ALL", "TZ")):
        import kubernetes

        self.kubeconfig = str(kubeconfig)
        cfg = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(config_file=self.kubeconfig, client_configuration=cfg)
        cfg.connection_pool_maxsize = 32  # one thread per pod, plus the watch and the heartbeat
        self.api = kubernetes.client.ApiClient(cfg)
        self.core = kubernetes.client.CoreV1Api(self.api)
        self.coord = kubernetes.client.CoordinationV1Api(self.api)
        host = self.api.configuration.host.split("://", 1)[1]
        self.api_host, _, port = host.rpartition(":")
        self.api_port = int(port or 443)
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.node_name = node_name
        self.capacity = capacity or {"cpu": "16", "memory": "64Gi", "pods": "110", "ephemeral-storage": "100Gi"}
        self.labels = {NODE_LABEL: "true", "kubernetes.io/hostname": node_name, "kubernetes.io/os": "linux",
                       "kubernetes.io/arch": "amd64", **(labels or {})}
        self.taints = [TAINT] if taints is None else taints
        self.pass_env = pass_env
        self.workers: dict[str, PodWorker] = {}
        self.pids: set[int] = set()
        self.stop_event = threading.Event()
        self.stop_grace = 2.0
        self.threads: list[threading.Thread] = []
        self.lock = threading.Lock()
        self.node_uid: str | None = None

    # ------------------------------------------------------------------------------------- API
    def log_path(self, namespace: str, pod: str, container: str) -> Path:
        d = self.root / "logs" / namespace / pod
        d.mkdir(parents=True, exist_ok=True)
        return d / f"{container}.log"

    def patch_status(self, worker: PodWorker, status: dict) -> None:
        from kubernetes.client.rest import ApiException

        try:
            self.core.patch_namespaced_pod_status(
                worker.name, worker.ns, {"metadata": {"uid": worker.uid}, "status": status},
                _content_type="application/merge-patch+json")
        except ApiException as exc:
            if exc.status not in (404, 409):  # gone, or replaced by a pod of the same name
                log.warning("status of %s/%s: %s", worker.ns, worker.name, exc)

    def start(self) -> LocalRunner:
        self.register_node()
        for target in (self.heartbeat_loop, self.watch_loop):
            t = threading.Thread(target=target, name=f"local-runner-{target.__name__}", daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def stop(self, delete_node: bool = True) -> None:
        """Stop serving: every pod's containers get SIGTERM (SIGKILL after 2 s); the Node is deleted."""
        self.stop_event.set()
        for w in list(self.workers.values()):
            w.stop_event.set()
        for w in list(self.workers.values()):
            if w.thread:
                w.thread.join(timeout=15)
        for t in self.threads:
            t.join(timeout=10)
        if delete_node:
            try:
                self.core.delete_node(self.node_name)
            except Exception:  # noqa: BLE001 - the API server may be gone already
                pass

    def alive_pids(self) -> list[int]:
        out = []
        for pid in self.pids:
            try:
                os.kill(pid, 0)
                with open(f"/proc/{pid}/stat") as f:
                    if f.read().split(")")[-1].split()[0] != "Z":
                        out.append(pid)
            except (ProcessLookupError, FileNotFoundError):
                pass
        return out

    # ------------------------------------------------------------------------------------ node
    def node_status(self) -> dict:
        t = now()
        conds = [{"type": kind, "status": "False", "reason": f"KubeletHas{ok}", "message": "local runner",
                  "lastHeartbeatTime": t, "lastTransitionTime": t}
                 for kind, ok in (("MemoryPressure", "SufficientMemory"), ("DiskPressure", "NoDiskPressure"),
                                  ("PIDPressure", "SufficientPID"))]
        conds.append({"type": "Ready", "status": "True", "reason": "KubeletReady",
                      "message": "local runner is posting ready status", "lastHeartbeatTime": t,
                      "lastTransitionTime": t})
        from tests.cluster.controlplane import versions

        return {"capacity": self.capacity, "allocatable": self.capacity, "conditions": conds,
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                              {"type": "Hostname", "address": self.node_name}],
                "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux", "bootID": "", "machineID": "",
                             "systemUUID": "", "kernelVersion": os.uname().release, "osImage": "local runner",
                             "containerRuntimeVersion": "local://nova-test-runner",
                             "kubeletVersion": f"v{versions()['K8S_VERSION']}", "kubeProxyVersion": ""}}

    def register_node(self) -> None:
        from kubernetes.client.rest import ApiException

        body = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": self.node_name, "labels": self.labels},
                "spec": {"taints": list(self.taints)}, "status": self.node_status()}
        try:
            node = self.core.create_node(body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            node = self.core.patch_node(self.node_name, {"metadata": {"labels": self.labels}})
            self.core.patch_node_status(self.node_name, {"status": self.node_status()})
        self.node_uid = node.metadata.uid
        self.renew_lease()

    def renew_lease(self) -> None:
        from kubernetes.client.rest import ApiException

        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.node_name, "namespace": "kube-node-lease",
                             "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": self.node_name,
                                                  "uid": self.node_uid}]},
                "spec": {"holderIdentity": self.node_name, "leaseDurationSeconds": LEASE_SECONDS,
                         "renewTime": _micro_now()}}
        try:
            self.coord.patch_namespaced_lease(self.node_name, "kube-node-lease", {"spec": body["spec"]})
        except ApiException as exc:
            if exc.status != 404:
                raise
            self.coord.create_namespaced_lease("kube-node-lease", body)

    def heartbeat_loop(self) -> None:
        while not self.stop_event.wait(HEARTBEAT_SECONDS):
            try:
                self.renew_lease()
                conditions = self.node_status()["conditions"]
                self.core.patch_node_status(self.node_name, {"status": {"conditions": conditions}})
            except Exception as exc:  # noqa: BLE001 - keep beating through API hiccups
                log.warning("heartbeat: %s", exc)

    # ------------------------------------------------------------------------------------ pods
    def watch_loop(self) -> None:
        from kubernetes import watch

        selector = f"spec.nodeName={self.node_name}"
        while not self.stop_event.is_set():
            try:
                pods = self.core.list_pod_for_all_namespaces(field_selector=selector)
                seen = set()
                for p in pods.items:
                    d = self.api.sanitize_for_serialization(p)
                    seen.add(d["metadata"]["uid"])
                    self.sync(d)
                for uid in list(self.workers):
                    if uid not in seen:
                        self.forget(uid)
                w = watch.Watch()
                for ev in w.stream(self.core.list_pod_for_all_namespaces, field_selector=selector,
                                   resource_version=pods.metadata.resource_version, timeout_seconds=20,
                                   _request_timeout=30):
                    if self.stop_event.is_set():
                        w.stop()
                        break
                    d = self.api.sanitize_for_serialization(ev["object"])
                    if ev["type"] == "DELETED":
                        self.forget(d["metadata"]["uid"])
                    elif ev["type"] in ("ADDED", "MODIFIED"):
                        self.sync(d)
            except Exception as exc:  # noqa: BLE001 - relist after any watch failure
                if not self.stop_event.is_set():
                    log.warning("watch: %s", exc)
                    self.stop_event.wait(0.5)

    def sync(self, pod: dict) -> None:
        uid = pod["metadata"]["uid"]
        with self.lock:
            worker = self.workers.get(uid)
            if worker is None:
                if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                    if pod["metadata"].get("deletionTimestamp"):
                        self._final_delete(pod["metadata"]["namespace"], pod["metadata"]["name"], uid)
                    return  # finished before (or by another runner): nothing to run
                d = self.root / "pods" / f"{pod['metadata']['namespace']}_{pod['metadata']['name']}_{uid[:8]}"
                d.mkdir(parents=True, exist_ok=True)
                worker = PodWorker(self, pod, d)
                self.workers[uid] = worker
                if not pod["metadata"].get("deletionTimestamp"):
                    worker.thread = threading.Thread(target=worker.run, name=f"pod-{pod['metadata']['name']}",
                                                     daemon=True)
                    worker.thread.start()
            worker.pod["metadata"] = pod["metadata"]
        if pod["metadata"].get("deletionTimestamp") and worker.delete_grace is None:
            # as kubelet: SIGTERM, SIGKILL after the grace period, final status, delete with grace 0
            grace = pod["metadata"].get("deletionGracePeriodSeconds")
            with worker.lock:
                worker.delete_grace = 30 if grace is None else grace
                worker.stop_event.set()
                running = worker.thread is not None and not worker.finished
            if not running:
                threading.Thread(target=self.finish_deletion, args=(worker,), daemon=True).start()

    def finish_deletion(self, worker: PodWorker) -> None:
        if worker.phase not in ("Succeeded", "Failed") and worker.start_time is not None:
            ok = all(p.exit_code == 0 for p in worker.main.values())
            worker.phase = "Succeeded" if ok else "Failed"
            worker.report()
        self._final_delete(worker.ns, worker.name, worker.uid)

    def _final_delete(self, ns: str, name: str, uid: str) -> None:
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        try:
            self.core.delete_namespaced_pod(name, ns, body=client.V1DeleteOptions(
                grace_period_seconds=0, preconditions=client.V1Preconditions(uid=uid)))
        except ApiException as exc:
            if exc.status not in (404, 409):
                log.warning("delete %s/%s: %s", ns, name, exc)

    def forget(self, uid: str) -> None:
        with self.lock:
            worker = self.workers.pop(uid, None)
        if worker is not None:
            worker.forgotten = True
            worker.stop_event.set()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.cluster.local_runner", description=__doc__.split("\n")[0])
    ap.add_argument("--kubeconfig", required=True)
    ap.add_argument("--root", required=True, help="folder for pod folders and container logs")
    ap.add_argument("--node-name", default=NODE_NAME)
    ap.add_argument("--capacity", default="", help="extra or overridden capacity, e.g. cpu=8,nvidia.com/gpu=1")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    capacity = {"cpu": "16", "memory": "64Gi", "pods": "110", "ephemeral-storage": "100Gi"}
    for kv in filter(None, args.capacity.split(",")):
        k, v = kv.split("=", 1)
        capacity[k] = v
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    runner = LocalRunner(args.kubeconfig, args.root, args.node_name, capacity=capacity).start()
    log.info("serving node %s", args.node_name)
    while not stop.wait(0.5):
        pass
    runner.stop(delete_node=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
