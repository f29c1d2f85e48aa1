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
from collections.abc import Callable
from typing import Any

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
    assert status["model"]["symbols"][0] == {"symbol": "AAA", "uri": f"/output/{kube_namespace}/gpu/AAA",
                                             "file": "AAA.ubj", "bestValue": 0.64, "metrics": {"auc": 0.63}}
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
        wait_for(lambda i=i: cluster.phase(f"r{i}") == "Preparing", f"r{i} Preparing", op=op2)
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
        wait_for(lambda name=name: cluster.phase(name) == "Preparing", f"{name} Preparing", op=op)
    # only the run whose studies go with it is held by a finalizer (Nova's); the other goes at once
    assert not cluster.run("keep")["metadata"].get("finalizers")
    assert cluster.run("drop")["metadata"]["finalizers"] == ["nova.dev/studies"]
    for name in ("keep", "drop"):
        cluster.custom.delete_namespaced_custom_object(GROUP, VERSION, cluster.ns, PLURAL, name)
    for name in ("keep", "drop"):
        wait_for(lambda name=name: cluster.children(name) == ([], []), f"{name}'s Job and ConfigMap collected", op=op)
        wait_for(lambda name=name: not cluster.pods(f"{name}-workers"), f"{name}'s pods collected", op=op)
    names = {s.study_name for s in optuna.get_all_study_summaries(storage_url)}
    assert names == {f"{cluster.ns}.keep.AAA", f"{cluster.ns}.keep.BBB"}


def test_missing_secret_waits_with_what_to_create_then_recovers(cluster, operator, storage_url, gpu_nodes):
    """A missing Secret is waited for (Pending, a Warning Event), never Failed: Failed would set a
    completionTime and start ttlSecondsAfterFinished on a run that is about to go on."""
    op = operator()
    cluster.create_run(run_body("nosecret", secret="optuna-db", gpu={"count": 0}, ttlSecondsAfterFinished=5))
    reconciling = wait_for(lambda: next((c for c in (cluster.run("nosecret").get("status") or {}).get("conditions", [])
                                         if c["type"] == "Reconciling" and c["reason"] == "SecretNotFound"), None),
                           "SecretNotFound", op=op)
    status = cluster.run("nosecret")["status"]
    assert status["phase"] == "Pending" and "completionTime" not in status
    assert "Secret 'optuna-db'" in reconciling["message"] and "key 'url'" in reconciling["message"]
    assert "spec.tuning.storage.secretRef" in reconciling["message"] and "kubectl" in reconciling["message"]
    assert cluster.condition("nosecret", "Stalled")["status"] == "False"
    assert cluster.children("nosecret")[0] == []
    time.sleep(7)  # past the TTL: a waiting run is not finished, so it is not deleted
    cluster.secret("optuna-db", storage_url)
    wait_for(lambda: cluster.phase("nosecret") == "Preparing", "recovered once the Secret exists", op=op)


def test_a_child_the_api_server_refuses_fails_the_run_saying_what_to_fix(cluster, operator, storage_url, gpu_nodes):
    """A ConfigMap the API server refused (once: 100,000 model.params keys, over 1 MiB; the schema
    now bounds them) left an empty PHASE, no Event and a traceback per pass. Here a namespace quota
    of zero ConfigMaps refuses it: the run fails with the server's own reason, and says so."""
    cluster.secret("optuna", storage_url)
    cluster.core.create_namespaced_resource_quota(cluster.ns, {
        "metadata": {"name": "no-configmaps"}, "spec": {"hard": {"configmaps": "0"}}})
    op = operator()
    cluster.create_run(run_body("refused", gpu={"count": 0}))
    wait_for(lambda: cluster.phase("refused") == "Failed", "Failed", op=op)
    stalled = cluster.condition("refused", "Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == "ChildRejected", stalled
    assert "403" in stalled["message"] and "quota" in stalled["message"], stalled["message"]
    events = cluster.core.list_namespaced_event(
        cluster.ns, field_selector="involvedObject.name=refused").items
    assert any(e.reason == "ChildRejected" and e.type == "Warning" for e in events)
    assert "Traceback" not in op.output()


def test_a_recreated_run_with_another_target_never_continues_the_old_study(cluster, operator, storage_url,
                                                                           gpu_nodes):
    """`<namespace>.<run>.<symbol>` once silently joined the old study: its best value came from
    trials that measured something else. The study carries a fingerprint of what it measures."""
    cluster.secret("optuna", storage_url)
    op = operator()
    cluster.create_run(run_body("same", gpu={"count": 0}))
    wait_for(lambda: cluster.phase("same") == "Preparing", "first run Preparing", op=op)
    cluster.custom.delete_namespaced_custom_object(GROUP, VERSION, cluster.ns, PLURAL, "same")
    wait_for(lambda: cluster.gone("same") and cluster.children("same") == ([], []), "first run gone", op=op)
    cluster.create_run(run_body("same", gpu={"count": 0}, target={"horizon": 1, "kind": "return"},
                                tuning={"metric": "rmse"}))
    wait_for(lambda: cluster.phase("same") == "Failed", "the re-created run refused", op=op)
    stalled = cluster.condition("same", "Stalled")
    assert stalled["reason"] == "StudyMismatch" and f"{cluster.ns}.same.AAA" in stalled["message"], stalled
    assert cluster.job("same-workers").spec.suspend is True  # no pod runs trials into the old study
    study = optuna.load_study(study_name=f"{cluster.ns}.same.AAA", storage=storage_url)
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE  # still the first run's (auc), not rmse's


def test_what_only_the_operator_refuses_names_the_users_own_key(cluster, operator, storage_url, gpu_nodes):
    """A list as a model.params value passes the API server (the value is untyped there) and is
    refused by the operator: once as `spec.model.params.maxDepth.float: ...` and three more lines."""
    cluster.secret("optuna", storage_url)
    op = operator()
    cluster.create_run(run_body("badparam", gpu={"count": 0}, model={"params": {"max_depth": [3]}}))
    wait_for(lambda: cluster.phase("badparam") == "Failed", "Failed", op=op)
    message = cluster.condition("badparam", "Stalled")["message"]
    assert "spec.model.params.max_depth: must be a number, an integer, a string, a boolean" in message, message
    assert "maxDepth" not in message and message.count("spec.model.params") == 1


def test_a_missing_default_secret_says_it_came_from_the_operators_default(cluster, operator, gpu_nodes):
    op = operator(NOVA_DEFAULT_STORAGE_SECRET="chart-db/url")
    body = run_body("nodefault", gpu={"count": 0})
    del body["spec"]["tuning"]["storage"]
    cluster.create_run(body)
    reconciling = wait_for(lambda: next((c for c in (cluster.run("nodefault").get("status") or {}).get("conditions", [])
                                         if c["type"] == "Reconciling" and c["reason"] == "SecretNotFound"), None),
                           "SecretNotFound", op=op)
    assert "Secret 'chart-db'" in reconciling["message"]
    assert "operator's default storage Secret" in reconciling["message"]
    assert "named by spec.tuning.storage.secretRef" not in reconciling["message"]
