"""The operator against a real control plane and a real PostgreSQL: children, scheduling on GPU
nodes, status transitions, restarts, suspend/resume, deletion and errors only it can judge.

Worker pods go to kwok nodes (the GPU ones when the run asks for GPUs) and do not run trials there:
kwok keeps them Running until the test annotates how they end (`nova.dev/kwok-exit-code`); the test
plays the workers by writing trials into the very studies the operator created, and plays the
kubelet only for the refit pod's exit (its termination message), which is all the operator reads of
it. The same path with pods that really run is tests/operator/test_e2e.py."""

from __future__ import annotations

import base64
import json
import time
from typing import Any, Callable

import optuna
import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from tests.cluster.fixtures import KWOK_EXIT_CODE_ANNOTATION
from tests.support.waiting import wait_for as support_wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.integration]
GROUP, VERSION, PLURAL = "nova.dev", "v1alpha1", "trainingruns"


def wait_for(check: Callable[[], Any], what: str, timeout: float = 60, op=None) -> Any:
    return support_wait_for(check, what, timeout, diagnose=(lambda: op.output()[-3000:]) if op else None)


def run_body(name: str, secret: str = "optuna", **spec) -> dict:
    body = {"data": {"source": "synthetic", "symbols": ["AAA", "BBB"], "bars": 900},
            "features": {"set": "minimal"},
            "validation": {"walkForward": {"folds": 2, "testSize": 80, "gap": 1, "minTrainSize": 300}},
            "tuning": {"trials": 3, "workers": 2, "storage": {"secretRef": {"name": secret, "key": "url"}}},
            "gpu": {"count": 1},
            "resources": {"trainer": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                          "prep": {"requests": {"cpu": "100m", "memory": "64Mi"}}}}
    for key, value in spec.items():
        body[key] = {**body.get(key, {}), **value} if isinstance(value, dict) else value
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainingRun", "metadata": {"name": name}, "spec": body}


class Cluster:
    def __init__(self, api: k8s.ApiClient, namespace: str) -> None:
        self.ns = namespace
        self.core = k8s.CoreV1Api(api)
        self.batch = k8s.BatchV1Api(api)
        self.custom = k8s.CustomObjectsApi(api)

    def secret(self, name: str, url: str) -> None:
        self.core.create_namespaced_secret(self.ns, {"metadata": {"name": name},
                                                     "data": {"url": base64.b64encode(url.encode()).decode()}})

    def create_run(self, body: dict) -> dict:
        return self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, body)

    def run(self, name: str) -> dict:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name)

    def patch_run(self, name: str, spec: dict) -> None:
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name, {"spec": spec})

    def gone(self, name: str) -> bool:
        try:
            self.run(name)
        except ApiException as exc:
            return exc.status == 404
        return False

    def phase(self, name: str) -> str | None:
        return (self.run(name).get("status") or {}).get("phase")

    def condition(self, name: str, ctype: str) -> dict:
        return next(c for c in self.run(name)["status"]["conditions"] if c["type"] == ctype)

    def job(self, name: str) -> k8s.V1Job:
        return self.batch.read_namespaced_job(name, self.ns)

    def children(self, run: str) -> tuple[list, list]:
        sel = f"nova.dev/run={run}"
        return (self.batch.list_namespaced_job(self.ns, label_selector=sel).items,
                self.core.list_namespaced_config_map(self.ns, label_selector=sel).items)

    def pods(self, job: str) -> list[k8s.V1Pod]:
        return self.core.list_namespaced_pod(self.ns, label_selector=f"job-name={job}").items


@pytest.fixture
def cluster(kube, kube_namespace) -> Cluster:
    return Cluster(kube, kube_namespace)


@pytest.fixture
def storage_url(operator_pg, kube_namespace) -> str:
    return operator_pg.create_database(kube_namespace.replace("-", "_"))


@pytest.fixture
def gpu_nodes(kube) -> list[str]:
    """The harness's kwok nodes with GPU capacity (tests/cluster: kwok-gpu-0, kwok-gpu-1)."""
    found = [n.metadata.name for n in k8s.CoreV1Api(kube).list_node().items
             if int((n.status.allocatable or {}).get("nvidia.com/gpu", "0")) > 0]
    assert found, "the control plane has no GPU nodes"
    return found


def add_trials(url: str, study_name: str, values: list[float | None]) -> None:
    """Play a worker: finished trials in the operator's study (None = pruned)."""
    study = optuna.load_study(study_name=study_name, storage=url)
    dist = {"eta": FloatDistribution(0.01, 0.3)}
    for v in values:
        if v is None:
            study.add_trial(create_trial(state=TrialState.PRUNED, params={"eta": 0.1}, distributions=dist,
                                         intermediate_values={1: 0.4}))
        else:
            study.add_trial(create_trial(params={"eta": 0.05}, distributions=dist, value=v))


def finish_refit_pod(cluster: Cluster, job: str, summary: dict) -> None:
    """Play the kubelet for the refit pod: it exited 0 and left its summary as termination message."""
    pod = wait_for(lambda: [p for p in cluster.pods(job) if p.spec.node_name], f"a scheduled {job} pod")[0]
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    cluster.core.patch_namespaced_pod_status(pod.metadata.name, cluster.ns, {"status": {
        "phase": "Succeeded",
        "conditions": [{"type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": now}],
        "containerStatuses": [{"name": "refit", "image": pod.spec.containers[0].image, "imageID": "", "ready": False,
                               "restartCount": 0, "started": False,
                               "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now,
                                                        "finishedAt": now, "message": json.dumps(summary)}}}]}})


def test_gpu_run_from_apply_to_succeeded(cluster, operator, storage_url, gpu_nodes, kube_namespace):
    cluster.secret("optuna", storage_url)
    op = operator()
    cluster.create_run(run_body("gpu"))
    job = wait_for(lambda: cluster.job("gpu-workers"), "the worker Job", op=op)
    assert job.spec.completion_mode == "Indexed" and job.spec.completions == job.spec.parallelism == 2
    assert job.metadata.owner_references[0].kind == "TrainingRun"
    cm = cluster.core.read_namespaced_config_map("gpu-config", kube_namespace)
    assert json.loads(cm.data["run.json"])["spec"]["tuning"]["trials"] == 3

    pods = wait_for(lambda: [p for p in cluster.pods("gpu-workers") if p.spec.node_name] if len(
        [p for p in cluster.pods("gpu-workers") if p.spec.node_name]) == 2 else None, "2 scheduled worker pods", op=op)
    for pod in pods:
        assert pod.spec.node_name in gpu_nodes
        trainer = pod.spec.containers[0]
        assert trainer.resources.limits["nvidia.com/gpu"] == "1"
        assert pod.spec.init_containers[0].restart_policy == "Always"
        assert trainer.env[0].value_from.secret_key_ref.name == "optuna"
    assert sorted(p.metadata.annotations["batch.kubernetes.io/job-completion-index"] for p in pods) == ["0", "1"]

    wait_for(lambda: cluster.phase("gpu") == "Preparing", "Preparing", op=op)
    prefix = f"{kube_namespace}.gpu"
    assert {s.study_name for s in optuna.get_all_study_summaries(storage_url)} == {f"{prefix}.AAA", f"{prefix}.BBB"}

    add_trials(storage_url, f"{prefix}.AAA", [0.61])
    wait_for(lambda: cluster.phase("gpu") == "Running", "Running", op=op)
    status = wait_for(lambda: cluster.run("gpu")["status"] if cluster.run("gpu")["status"].get("trials") == "1/6"
                      else None, "trials 1/6", op=op)
    assert status["bestValue"] == 0.61 and status["bestSymbol"] == "AAA"
    assert status["workers"]["desired"] == 2

    # kwok keeps the worker pods Running (its pod-ready stage) until told how they end
    assert all(p.status.phase == "Running" for p in cluster.pods("gpu-workers"))
    wait_for(lambda: (cluster.run("gpu")["status"].get("workers") or {}).get("ready") == 2, "2 ready workers", op=op)

    add_trials(storage_url, f"{prefix}.AAA", [None, 0.64])
    add_trials(storage_url, f"{prefix}.BBB", [0.55, 0.57, None])
    for pod in cluster.pods("gpu-workers"):  # the workers see the budget met and exit 0
        cluster.core.patch_namespaced_pod(pod.metadata.name, kube_namespace, {"metadata": {"annotations": {
            KWOK_EXIT_CODE_ANNOTATION: "0"}}})
    wait_for(lambda: cluster.phase("gpu") == "Refitting", "Refitting", op=op)
    refit = wait_for(lambda: cluster.job("gpu-refit"), "the refit Job", op=op)
    assert refit.spec.template.spec.containers[0].resources.limits["nvidia.com/gpu"] == "1"
    assert cluster.condition("gpu", "TuningComplete")["reason"] == "BudgetReached"

    wait_for(lambda: (cluster.job("gpu-workers").status.succeeded or 0) == 2, "the worker Job complete", op=op)
    finish_refit_pod(cluster, "gpu-refit", {
        "AAA": {"best_value": 0.64, "metrics": {"auc": 0.63}, "model": "AAA.ubj"},
        "BBB": {"best_value": 0.57, "metrics": {"auc": 0.56}, "model": "BBB.ubj"}})
    wait_for(lambda: cluster.phase("gpu") == "Succeeded", "Succeeded", timeout=90, op=op)
    status = cluster.run("gpu")["status"]
    assert status["model"]["uri"] == f"/output/{kube_namespace}/gpu"
    assert status["model"]["symbols"][0] == {"symbol": "AAA", "file": "AAA.ubj", "bestValue": 0.64,
                                             "metrics": {"auc": 0.63}}
    assert status["trials"] == "6/6" and status["bestValue"] == 0.64
    assert status["workers"]["succeeded"] == 2 and status["workers"]["active"] == 0
    assert cluster.condition("gpu", "Ready")["status"] == "True"
    assert status["observedGeneration"] == cluster.run("gpu")["metadata"]["generation"]
    reasons = {e.reason for e in cluster.core.list_namespaced_event(
        kube_namespace, field_selector="involvedObject.name=gpu").items}
    assert {"Preparing", "Tuning", "TuningComplete", "Succeeded"} <= reasons


def test_operator_killed_and_restarted_makes_no_duplicates(cluster, operator, storage_url, gpu_nodes):
    cluster.secret("optuna", storage_url)
    op = operator()
    for i in range(3):
        cluster.create_run(run_body(f"r{i}", gpu={"count": 0}))
    time.sleep(0.4)
    op.kill()  # somewhere between "nothing made" and "everything made"
    op2 = operator()
    for i in range(3):
        wait_for(lambda: cluster.phase(f"r{i}") == "Preparing", f"r{i} Preparing", op=op2)
    uids = {}
    for i in range(3):
        jobs, cms = cluster.children(f"r{i}")
        assert len(jobs) == 1 and len(cms) == 1
        uids[i] = jobs[0].metadata.uid
    op2.kill()
    op3 = operator()
    add_trials(storage_url, f"{cluster.ns}.r0.AAA", [0.5])
    wait_for(lambda: cluster.phase("r0") == "Running", "r0 Running after a second restart", op=op3)
    for i in range(3):
        jobs, cms = cluster.children(f"r{i}")
        assert [j.metadata.uid for j in jobs] == [uids[i]] and len(cms) == 1
    assert cluster.run("r0")["status"]["trials"] == "1/6"


def test_suspend_and_resume(cluster, operator, storage_url, gpu_nodes):
    cluster.secret("optuna", storage_url)
    op = operator()
    cluster.create_run(run_body("s", gpu={"count": 0}))
    wait_for(lambda: len(cluster.pods("s-workers")) == 2, "2 worker pods", op=op)
    add_trials(storage_url, f"{cluster.ns}.s.AAA", [0.6])
    cluster.patch_run("s", {"suspend": True})
    wait_for(lambda: cluster.job("s-workers").spec.suspend is True, "the Job suspended", op=op)
    wait_for(lambda: cluster.phase("s") == "Suspended", "Suspended", op=op)
    wait_for(lambda: not [p for p in cluster.pods("s-workers") if not p.metadata.deletion_timestamp],
             "worker pods gone while suspended", op=op)
    assert cluster.condition("s", "Suspended")["status"] == "True"
    cluster.patch_run("s", {"suspend": False})
    wait_for(lambda: cluster.job("s-workers").spec.suspend is False, "the Job resumed", op=op)
    wait_for(lambda: cluster.phase("s") == "Running", "Running again (the finished trial is kept)", op=op)
    wait_for(lambda: len([p for p in cluster.pods("s-workers") if not p.metadata.deletion_timestamp]) == 2,
             "worker pods back", op=op)
    assert cluster.run("s")["status"]["trials"] == "1/6"


def test_raising_workers_scales_the_job(cluster, operator, storage_url, gpu_nodes):
    cluster.secret("optuna", storage_url)
    op = operator()
    cluster.create_run(run_body("w", gpu={"count": 0}))
    wait_for(lambda: cluster.job("w-workers"), "the worker Job", op=op)
    cluster.patch_run("w", {"tuning": {"workers": 3}})
    job = wait_for(lambda: cluster.job("w-workers") if cluster.job("w-workers").spec.parallelism == 3 else None,
                   "parallelism 3", op=op)
    assert job.spec.completions == 3
    cm = cluster.core.read_namespaced_config_map("w-config", cluster.ns)
    assert json.loads(cm.data["run.json"])["spec"]["tuning"]["workers"] == 3


def test_deletion_removes_children_and_keeps_studies_unless_asked(cluster, operator, storage_url, gpu_nodes):
    cluster.secret("optuna", storage_url)
    op = operator()
    cluster.create_run(run_body("keep", gpu={"count": 0}))
    cluster.create_run(run_body("drop", gpu={"count": 0}, tuning={"storage": {
        "secretRef": {"name": "optuna", "key": "url"}, "keepStudies": False}}))
    for name in ("keep", "drop"):
        wait_for(lambda: cluster.phase(name) == "Preparing", f"{name} Preparing", op=op)
    # only the run whose studies go with it is held by a finalizer (Nova's); the other goes at once
    assert not cluster.run("keep")["metadata"].get("finalizers")
    assert cluster.run("drop")["metadata"]["finalizers"] == ["nova.dev/studies"]
    for name in ("keep", "drop"):
        cluster.custom.delete_namespaced_custom_object(GROUP, VERSION, cluster.ns, PLURAL, name)
    for name in ("keep", "drop"):
        wait_for(lambda: cluster.children(name) == ([], []), f"{name}'s Job and ConfigMap collected", op=op)
        wait_for(lambda: not cluster.pods(f"{name}-workers"), f"{name}'s pods collected", op=op)
    names = {s.study_name for s in optuna.get_all_study_summaries(storage_url)}
    assert names == {f"{cluster.ns}.keep.AAA", f"{cluster.ns}.keep.BBB"}


def test_missing_secret_fails_with_what_to_create_then_recovers(cluster, operator, storage_url, gpu_nodes):
    op = operator()
    cluster.create_run(run_body("nosecret", secret="optuna-db", gpu={"count": 0}))
    wait_for(lambda: cluster.phase("nosecret") == "Failed", "Failed", op=op)
    stalled = cluster.condition("nosecret", "Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == "SecretNotFound"
    assert "Secret 'optuna-db'" in stalled["message"] and "key 'url'" in stalled["message"]
    assert "kubectl" in stalled["message"]
    assert cluster.children("nosecret")[0] == []
    cluster.secret("optuna-db", storage_url)
    wait_for(lambda: cluster.phase("nosecret") == "Preparing", "recovered once the Secret exists", op=op)


def test_unreachable_storage_is_reported_masked_and_blocks_no_other_run(cluster, operator, storage_url, gpu_nodes):
    cluster.secret("optuna", storage_url)
    cluster.secret("down", "postgresql+psycopg://nova:s3cr3t-pw@127.0.0.1:1/optuna")
    op = operator()
    cluster.create_run(run_body("bad", secret="down", gpu={"count": 0}))
    cluster.create_run(run_body("good", gpu={"count": 0}))
    wait_for(lambda: cluster.phase("good") == "Preparing", "the good run proceeds", op=op)
    reconciling = wait_for(lambda: next((c for c in (cluster.run("bad").get("status") or {}).get("conditions", [])
                                         if c["type"] == "Reconciling" and c["reason"] == "StorageUnavailable"),
                                        None), "StorageUnavailable", op=op)
    assert "127.0.0.1:1" in reconciling["message"] and "s3cr3t-pw" not in json.dumps(cluster.run("bad"))
    assert cluster.children("bad")[0] == []


def test_ttl_after_finished_deletes_a_succeeded_run_and_its_children(cluster, operator, storage_url, gpu_nodes):
    cluster.secret("optuna", storage_url)
    op = operator()
    cluster.create_run(run_body("ttl", gpu={"count": 0}, data={"symbols": ["AAA"]}, ttlSecondsAfterFinished=4))
    wait_for(lambda: cluster.phase("ttl") == "Preparing", "Preparing", op=op)
    add_trials(storage_url, f"{cluster.ns}.ttl.AAA", [0.6, 0.62, None])
    for pod in cluster.pods("ttl-workers"):
        cluster.core.patch_namespaced_pod(pod.metadata.name, cluster.ns, {"metadata": {"annotations": {
            KWOK_EXIT_CODE_ANNOTATION: "0"}}})
    wait_for(lambda: cluster.job("ttl-refit"), "the refit Job", op=op)
    time.sleep(5)  # longer than the TTL: a run that has not finished is never deleted
    assert cluster.phase("ttl") == "Refitting"
    finish_refit_pod(cluster, "ttl-refit", {"AAA": {"best_value": 0.62, "metrics": {"auc": 0.6}, "model": "AAA.ubj"}})
    status = wait_for(lambda: cluster.run("ttl")["status"] if cluster.phase("ttl") == "Succeeded" else None,
                      "Succeeded", timeout=90, op=op)
    done = time.monotonic()
    assert status["completionTime"]

    wait_for(lambda: cluster.gone("ttl"), "the run deleted after ttlSecondsAfterFinished", timeout=60, op=op)
    assert time.monotonic() - done >= 1  # not at once (completionTime has a 1 s resolution)
    wait_for(lambda: cluster.children("ttl") == ([], []), "its Job and ConfigMap collected", timeout=90, op=op)
    # the study stays (keepStudies defaults to true): the tuning it holds is not thrown away
    assert f"{cluster.ns}.ttl.AAA" in {s.study_name for s in optuna.get_all_study_summaries(storage_url)}


def test_ttl_after_finished_deletes_a_failed_run(cluster, operator, storage_url, gpu_nodes):
    op = operator()
    cluster.create_run(run_body("ttlfail", secret="absent", gpu={"count": 0}, ttlSecondsAfterFinished=2))
    cluster.create_run(run_body("nottl", secret="absent", gpu={"count": 0}))
    wait_for(lambda: cluster.phase("ttlfail") == "Failed", "Failed", op=op)

    wait_for(lambda: cluster.gone("ttlfail"), "the failed run deleted after its TTL", timeout=60, op=op)
    assert cluster.phase("nottl") == "Failed"  # no TTL: kept for a human to read


@pytest.mark.reliability
@pytest.mark.timeout(420)
def test_a_node_removed_mid_run(cluster, operator, storage_url, control_plane, kube_namespace):
    """Both workers run on one GPU node, which is then deleted: the pod garbage collector removes its
    pods, the Job makes new ones on a second node, and the run carries on to Succeeded with its
    finished trials intact and one Job (the trials of a worker that died with its node are the
    heartbeat's: tests/integration/test_distributed_tuning.py)."""
    from tests.cluster.controlplane import gpu_node

    pool = {"nova.dev/test-pool": kube_namespace}
    doomed, spare = f"{kube_namespace}-gpu-a", f"{kube_namespace}-gpu-b"
    control_plane.add_nodes([_labelled(gpu_node(doomed), pool)])
    control_plane.wait_nodes_ready([doomed])
    cluster.secret("optuna", storage_url)
    op = operator()
    try:
        cluster.create_run(run_body("lost", scheduling={"nodeSelector": pool}))
        wait_for(lambda: len([p for p in cluster.pods("lost-workers") if p.status.phase == "Running"]) == 2,
                 "2 workers Running on the first node", timeout=120, op=op)
        assert {p.spec.node_name for p in cluster.pods("lost-workers")} == {doomed}
        add_trials(storage_url, f"{kube_namespace}.lost.AAA", [0.6, None])
        wait_for(lambda: cluster.run("lost")["status"].get("trials") == "2/6", "trials 2/6", op=op)
        first = {p.metadata.uid for p in cluster.pods("lost-workers")}

        control_plane.add_nodes([_labelled(gpu_node(spare), pool)])
        control_plane.wait_nodes_ready([spare])
        cluster.core.delete_node(doomed)
        replaced = wait_for(lambda: [p for p in cluster.pods("lost-workers") if p.metadata.uid not in first
                                     and p.status.phase == "Running"] if not any(
                                         p.metadata.uid in first for p in cluster.pods("lost-workers")) else None,
                            "the Job's new pods Running on the second node", timeout=240, op=op)
        assert len(replaced) == 2 and {p.spec.node_name for p in replaced} == {spare}
        wait_for(lambda: (cluster.run("lost")["status"].get("workers") or {}).get("ready") == 2,
                 "status: 2 ready workers again", op=op)
        status = cluster.run("lost")["status"]
        assert status["phase"] == "Running" and status["trials"] == "2/6", status

        add_trials(storage_url, f"{kube_namespace}.lost.AAA", [0.62])
        add_trials(storage_url, f"{kube_namespace}.lost.BBB", [0.55, 0.57, None])
        for pod in cluster.pods("lost-workers"):
            cluster.core.patch_namespaced_pod(pod.metadata.name, kube_namespace, {"metadata": {"annotations": {
                KWOK_EXIT_CODE_ANNOTATION: "0"}}})
        wait_for(lambda: cluster.job("lost-refit"), "the refit Job", op=op)
        finish_refit_pod(cluster, "lost-refit", {"AAA": {"best_value": 0.62, "model": "AAA.ubj"},
                                                 "BBB": {"best_value": 0.57, "model": "BBB.ubj"}})
        wait_for(lambda: cluster.phase("lost") == "Succeeded", "Succeeded", timeout=90, op=op)
        jobs, cms = cluster.children("lost")
        assert sorted(j.metadata.name for j in jobs) == ["lost-refit", "lost-workers"] and len(cms) == 1
        study = optuna.load_study(study_name=f"{kube_namespace}.lost.AAA", storage=storage_url)
        assert [t.state for t in study.trials][:2] == [TrialState.COMPLETE, TrialState.PRUNED]
        assert cluster.run("lost")["status"]["trials"] == "6/6"
    finally:
        for node in (doomed, spare):
            try:
                cluster.core.delete_node(node)
            except ApiException:
                pass
            if node in control_plane.node_names:
                control_plane.node_names.remove(node)


def _labelled(node: dict, labels: dict[str, str]) -> dict:
    node["metadata"].setdefault("labels", {}).update(labels)
    return node
