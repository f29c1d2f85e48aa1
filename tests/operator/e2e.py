"""The harness of the end-to-end tests: runs whose pods really run, on the real node.

The control plane of tests/cluster, `nova-operator` as a subprocess on this machine (so a kill is a
real kill and a restart a real restart), PostgreSQL holding the studies, and the run's pods on the
real node (kubelet + containerd + runc, tests/cluster/node.py) from Nova's own trainer image: the
`prep` native sidecar and the `trainer` container of the worker pods, then the refit pod, whose
models land on a claim. The namespace enforces the restricted Pod Security Standard, as the chart's
users are told to.

What the test cluster lacks, stated here once: no storage provisioner (the claim `models` is bound
to a static hostPath PersistentVolume in the node's folder, shared by every pod of the node as a
ReadWriteMany volume is) and services on this machine's loopback (PostgreSQL, the S3 server) are
reached by pods through a forwarder on the bridge address (`reach`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import optuna
import yaml
from kubernetes import client as k8s
from optuna.trial import TrialState

from tests.cluster.fixtures import REAL_NODE_SELECTOR, REAL_NODE_TOLERATION
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart.yaml"
GROUP, VERSION, PLURAL = "nova.dev", "v1alpha1", "trainingruns"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
CLAIM = "models"
ON_REAL_NODE = {"nodeSelector": REAL_NODE_SELECTOR, "tolerations": [REAL_NODE_TOLERATION]}


def tiny_quickstart(name: str, trials: int, workers: int, rounds: int = 40, bars: int = 900,
                    early_stopping: int | None = 10) -> dict:
    """examples/quickstart.yaml, shrunk: same sections, seconds instead of minutes, on the real node."""
    run = yaml.safe_load(QUICKSTART.read_text())
    run["metadata"] = {"name": name}
    spec = run["spec"]
    spec["data"] = {"source": "synthetic", "symbols": ["AAA"], "bars": bars, "seed": 11}
    spec["features"] = {"set": "minimal"}
    spec["validation"] = {"walkForward": {"folds": 2, "testSize": 80, "gap": 1, "minTrainSize": 300}}
    spec["model"].update({"device": "cpu", "numBoostRound": rounds, "earlyStoppingRounds": early_stopping,
                          "nthread": 1})
    spec["tuning"].update({"trials": trials, "workers": workers, "heartbeatSeconds": 1, "graceSeconds": 8,
                           "pruner": {"type": "median", "warmupSteps": 5, "startupTrials": 2},
                           "storage": {"secretRef": {"name": "optuna", "key": "url"}}})
    spec["scheduling"] = ON_REAL_NODE
    small = {"requests": {"cpu": "100m", "memory": "128Mi"}}
    spec["resources"] = {"trainer": small, "prep": small}
    return run


def study_trials(pg_url: str, study: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=study, storage=pg_url).get_trials(deepcopy=False)


def counted(trials: list[optuna.trial.FrozenTrial]) -> int:
    """What the budget counts (nova_trainer.tuning.budget): finished trials, a failed one only
    when no retry replaced it."""
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    return sum(1 for t in trials if t.state in FINISHED and not (t.state == TrialState.FAIL and t.number in retried))


class E2E:
    """One test's namespace on the real node: its models claim, its operator, what it saw."""

    def __init__(self, control_plane, api: k8s.ApiClient, node, ns: str, operator_factory, pg_url: str) -> None:
        self.cp, self.node, self.ns, self.pg_url = control_plane, node, ns, pg_url
        self._operator_factory = operator_factory
        self.op = None
        self.core = k8s.CoreV1Api(api)
        self.batch = k8s.BatchV1Api(api)
        self.custom = k8s.CustomObjectsApi(api)
        control_plane.kubectl("label", "namespace", ns, "--overwrite", "pod-security.kubernetes.io/enforce=restricted",
                              "pod-security.kubernetes.io/enforce-version=latest")
        self.models = node.work / f"models-{ns}"  # the claim's folder on the node
        self.models.mkdir()
        self.models.chmod(0o777)  # pods run as uid 1000; fsGroup does not apply to hostPath
        self.pv = f"nova-models-{ns}"
        self.core.create_persistent_volume({"metadata": {"name": self.pv}, "spec": {
            "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"], "storageClassName": "nova-test",
            "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": str(self.models), "type": "Directory"},
            "claimRef": {"namespace": ns, "name": CLAIM}}})
        self.core.create_namespaced_persistent_volume_claim(ns, {"metadata": {"name": CLAIM}, "spec": {
            "accessModes": ["ReadWriteMany"], "storageClassName": "nova-test", "volumeName": self.pv,
            "resources": {"requests": {"storage": "1Gi"}}}})
        wait_for(lambda: self.core.read_namespaced_persistent_volume_claim(CLAIM, ns).status.phase == "Bound",
                 "the models claim to be Bound", timeout=120)

    def close(self) -> None:
        self.cp.kubectl("delete", "pv", self.pv, "--wait=false", "--ignore-not-found", check=False)

    def operator(self, **env: str):
        """`nova-operator` on this machine, its runs' pods on the real node: the trainer image built
        here (never pulled) and the models claim, as the chart sets them."""
        self.op = self._operator_factory(**{"NOVA_TRAINER_IMAGE": self.node.images.trainer,
                                            "NOVA_IMAGE_PULL_POLICY": "Never", "NOVA_OUTPUT_CLAIM": CLAIM, **env})
        return self.op

    def reach(self, url: str) -> str:
        """`url` (a service on this machine's loopback) as the pods reach it: the bridge address and
        a forwarded port. This machine reaches it there too, so the operator uses the same URL."""
        parts = urlsplit(url)
        auth = parts.netloc.rpartition("@")[0]
        netloc = f"{auth + '@' if auth else ''}{self.node.host_ip}:{self.node.forward(parts.port)}"
        return urlunsplit(parts._replace(netloc=netloc))

    def kubectl(self, *args: str, check: bool = True):
        return self.cp.kubectl("-n", self.ns, *args, check=check, timeout=120)

    def status(self, name: str) -> dict:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name).get("status") or {}

    def pods(self, job: str) -> list[k8s.V1Pod]:
        return self.core.list_namespaced_pod(self.ns, label_selector=f"job-name={job}").items

    def log(self, pod: str, container: str) -> str:
        return self.node.pod_log(self.ns, pod, container)

    def container_pids(self, pod: k8s.V1Pod, container: str) -> list[int]:
        """The host PIDs of one running container's processes (containerd's view of its task)."""
        status = next(c for c in pod.status.container_statuses if c.name == container)
        cid = status.container_id.removeprefix("containerd://")
        out = self.node.runtime.containerd.ctr("tasks", "ps", cid).stdout.splitlines()[1:]
        return [int(line.split()[0]) for line in out if line.strip()]

    def diagnose(self, name: str) -> str:
        lines = [f"status: {json.dumps(self.status(name), indent=1)[:4000]}"]
        if self.op:
            lines += ["operator log:", self.op.output()[-4000:]]
        for p in self.core.list_namespaced_pod(self.ns).items:
            lines.append(f"pod {p.metadata.name}: {p.status.phase} on {p.spec.node_name}")
            for c in (p.spec.init_containers or []) + p.spec.containers:
                lines.append(f"--- {c.name}:\n{self.log(p.metadata.name, c.name)[-1500:]}")
        events = [f"{e.involved_object.name}: {e.reason} {e.message}"
                  for e in self.core.list_namespaced_event(self.ns).items]
        return "\n".join([*lines, "events:", *events[-30:]]) + "\n" + self.node.diagnose()

    def wait_for(self, check: Callable[[], Any], what: str, name: str, timeout: float = 120) -> Any:
        return wait_for(check, what, timeout, diagnose=lambda: self.diagnose(name))

    def storage_secret(self) -> None:
        """The Secret `optuna` with the study storage's URL as the pods reach it."""
        optuna.storages.RDBStorage(self.pg_url)  # Optuna's schema, so the test's reads never race its creation
        self.kubectl("create", "secret", "generic", "optuna", f"--from-literal=url={self.reach(self.pg_url)}")

    def start(self, manifest: dict, tmp_path: Path) -> str:
        """The Secret with the storage URL, then `kubectl apply -f run.yaml`, as a user does."""
        self.storage_secret()
        path = tmp_path / "run.yaml"
        path.write_text(yaml.safe_dump(manifest, sort_keys=False))
        out = self.kubectl("apply", "-f", str(path)).stdout
        name = manifest["metadata"]["name"]
        assert f"trainingrun.nova.dev/{name} created" in out
        return name

    def finished(self, name: str, timeout: float = 600) -> dict:
        """The run's status once it ended; it must have Succeeded."""
        self.wait_for(lambda: self.status(name).get("phase") in ("Succeeded", "Failed"), "the run to finish", name,
                      timeout=timeout)
        status = self.status(name)
        assert status["phase"] == "Succeeded", self.diagnose(name)
        return status
