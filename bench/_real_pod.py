"""The pod's layout in a real pod: prep as a native sidecar and the trainer, two containers of one
pod on the real node (kubelet, containerd, Nova's trainer image), each with its own CPU limit.

The containers run the commands the worker Job runs (`nova-trainer prep --linger`, `nova-trainer
tune --shards`, an emptyDir between them, `$NOVA_CPUS` from each container's own limit), on the
run's YAML from a ConfigMap; the trainer's studies are SQLite in its own emptyDir, as in the process
layout. Each command is wrapped in `sh` only to stamp when it started and ended (`date +%s.%N` into a
host folder), so the wall is the commands', not the pod sandbox's. Both append to one timeline there.
The stages are each command alone, in a pod of its own, on a host folder of shards.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from nova_operator.builders import container_security_context, cpu_env, pod_security_context  # noqa: E402
from nova_trainer import timeline  # noqa: E402
from tests.cluster import controlplane, node  # noqa: E402

CPU_LIMIT = "1"
STAMPS = "/timeline"


@contextmanager
def real_node(log=print) -> Iterator[tuple[controlplane.ControlPlane, node.Node]]:
    """Control plane, containerd with Nova's images, kubelet; all undone after (or the leftovers named)."""
    if not controlplane.binaries_present():
        controlplane.ensure_built(log=log)
    cp = controlplane.start(log=lambda m: None)
    runtime = n = None
    try:
        runtime = node.start_runtime(node.build_images(log=log), log=log)
        n = node.start_node(cp, runtime, log=log)
        cp.kubectl("create", "namespace", "bench")
        yield cp, n
    finally:
        problems = (n.stop() if n else []) + (runtime.stop() if runtime else [])
        cp.stop()
        if problems:
            print(f"the real node left things behind: {problems}", file=sys.stderr)


def _container(name: str, image: str, args: list[str], stamp_end: bool, mounts: list[dict]) -> dict:
    start = f'date +%s.%N > {STAMPS}/{name}.start; '
    script = (start + 'nova-trainer "$@"; rc=$?; ' + f'date +%s.%N > {STAMPS}/{name}.end; exit $rc'
              if stamp_end else start + 'exec nova-trainer "$@"')
    resources = {"requests": {"cpu": "500m"}, "limits": {"cpu": CPU_LIMIT}}
    return {"name": name, "image": image, "imagePullPolicy": "Never", "command": ["sh", "-c", script, "nova-trainer"],
            "args": args, "securityContext": container_security_context(), "resources": resources,
            "env": [cpu_env(resources),  # $NOVA_CPUS from this container's own limit, as the worker Job sets it
                    {"name": timeline.ENV, "value": f"{STAMPS}/timeline.jsonl"},
                    {"name": "NOVA_LOG_LEVEL", "value": "WARNING"}],
            "volumeMounts": [{"name": "stamps", "mountPath": STAMPS}, {"name": "config", "mountPath": "/config"},
                             {"name": "tmp", "mountPath": "/tmp"}, {"name": "work", "mountPath": "/work"}, *mounts]}


def _pod(name: str, n: node.Node, stamps: Path, containers: list[dict], init: list[dict],
         volumes: list[dict]) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "bench"},
            "spec": {"nodeName": n.name, "restartPolicy": "Never", "terminationGracePeriodSeconds": 10,
                     "securityContext": pod_security_context(),
                     "initContainers": init, "containers": containers,
                     "volumes": [{"name": "stamps", "hostPath": {"path": str(stamps), "type": "Directory"}},
                                 {"name": "config", "configMap": {"name": "pipeline-run"}},
                                 {"name": "tmp", "emptyDir": {}}, {"name": "work", "emptyDir": {}}, *volumes]}}


def _run_pod(cp: controlplane.ControlPlane, n: node.Node, body: dict, timeout: float = 600) -> None:
    name = body["metadata"]["name"]
    cp.kubectl("create", "-f", "-", input=json.dumps(body))
    deadline = time.monotonic() + timeout
    while True:
        status, text = cp.get(f"/api/v1/namespaces/bench/pods/{name}")
        phase = json.loads(text).get("status", {}).get("phase") if status == 200 else None
        if phase == "Succeeded":
            break
        if phase == "Failed" or time.monotonic() > deadline:
            logs = {c: n.pod_log("bench", name, c)[-3000:] for c in ("prep", "trainer")}
            raise SystemExit(f"real pod {name}: {phase or 'not done'} after {timeout:.0f} s\n{logs}\n{n.diagnose()}")
        time.sleep(0.2)
    cp.kubectl("delete", "pod", name, "-n", "bench", "--wait=false")


def _stamp(stamps: Path, name: str) -> float:
    return float((stamps / name).read_text().strip())


def _shared_folder(path: Path) -> Path:
    """A host folder the containers' user (not root) writes into."""
    path.mkdir()
    path.chmod(0o777)
    return path


def run_real_pod(cp: controlplane.ControlPlane, n: node.Node, doc: dict) -> dict:
    """One overlapped pod and each command alone: wall times, and the overlapped pod's timeline (its
    events as written, `t` in seconds since the epoch; `t0` is when prep's command started)."""
    unbounded = {**doc, "spec": {**doc["spec"], "prep": {"maxAhead": 100, "deleteAfterUse": True}}}
    image, tag = n.images.trainer, uuid.uuid4().hex[:6]

    def config(manifest: dict) -> None:
        cp.kubectl("delete", "configmap", "pipeline-run", "-n", "bench", "--ignore-not-found")
        cp.kubectl("create", "configmap", "pipeline-run", "-n", "bench",
                   f"--from-literal=run.yaml={yaml.safe_dump(manifest)}")

    config(doc)
    stamps = _shared_folder(n.work / f"bench-{tag}")
    features = {"name": "features", "mountPath": "/work/features"}
    prep = _container("prep", image, ["prep", "--linger", "--config", "/config/run.yaml", "--out", "/work/features"],
                      False, [features])
    prep["restartPolicy"] = "Always"  # the native sidecar, as in the worker Job
    trainer = _container("trainer", image, ["tune", "--config", "/config/run.yaml", "--shards", "/work/features",
                                            "--out", "/work/out"], True, [features])
    _run_pod(cp, n, _pod(f"pod-{tag}", n, stamps, [trainer], [prep], [{"name": "features", "emptyDir": {}}]))
    t0 = _stamp(stamps, "prep.start")
    result = {"real_pod_s": _stamp(stamps, "trainer.end") - t0, "t0": t0,
              "events": timeline.read(stamps / "timeline.jsonl")}
    shutil.rmtree(stamps, ignore_errors=True)

    config(unbounded)
    stamps = _shared_folder(n.work / f"bench-{tag}-alone")
    shards = _shared_folder(stamps / "shards")
    host_shards = [{"name": "features", "hostPath": {"path": str(shards), "type": "Directory"}}]
    alone = _container("prep", image, ["prep", "--config", "/config/run.yaml", "--out", "/work/features"], True,
                       [features])
    _run_pod(cp, n, _pod(f"prep-{tag}", n, stamps, [alone], [], host_shards))
    result["real_pod_prep_alone_s"] = _stamp(stamps, "prep.end") - _stamp(stamps, "prep.start")
    _run_pod(cp, n, _pod(f"tune-{tag}", n, stamps, [trainer], [], host_shards))
    result["real_pod_tune_alone_s"] = _stamp(stamps, "trainer.end") - _stamp(stamps, "trainer.start")
    shutil.rmtree(stamps, ignore_errors=True)
    result["real_pod_max_stage_s"] = max(result["real_pod_prep_alone_s"], result["real_pod_tune_alone_s"])
    result["wall_over_max_stage_real_pod"] = result["real_pod_s"] / result["real_pod_max_stage_s"]
    return result


if __name__ == "__main__":  # one overlapped pod, to try the harness: python bench/_real_pod.py
    sys.path.insert(0, str(ROOT / "bench"))
    from pipeline import manifest

    with real_node() as (cp, n):
        r = run_real_pod(cp, n, manifest(4, 100_000, 15, 6_000, 1))
        print({k: v for k, v in r.items() if k != "events"})
