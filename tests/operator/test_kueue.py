"""Nova under a real Kueue: the manager built from its Go module (tests/cluster/kueue.py), its CRDs
on the real control plane, a ClusterQueue with a quota of 2 `nvidia.com/gpu` and a LocalQueue in
the test's namespace. Worker pods go to the kwok GPU nodes (which have room for 8: the quota, not
the nodes, is what runs out); the test plays the workers by writing trials into the operator's
studies, as tests/operator/test_operator.py does.

What is checked: Kueue admits two of three 1-GPU runs and the third shows `Queued` with Kueue's
own reason until one of the two goes; a higher-priority run preempts a lower one, which waits
`Queued` (Kueue's preemption message), then resumes with its finished trials and ends with its
budget met; a user's `suspend` of a queued run holds its Workload (freeing its quota) and resuming
leaves the start to Kueue."""

from __future__ import annotations

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from nova_operator.builders import QUEUE_LABEL
from nova_operator.queueing import HOLD_ANNOTATION, JOB_UID_LABEL
from tests.cluster.fixtures import KWOK_EXIT_CODE_ANNOTATION
from tests.operator.test_operator import Cluster, add_trials, finish_refit_pod, run_body
from tests.support.waiting import wait_for as support_wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.integration]
KUEUE = ("kueue.x-k8s.io", "v1beta2")
QUEUE = "gpus"
HIGH = "nova-test-high"


@pytest.fixture
def cluster(kube, kube_namespace) -> Cluster:
    return Cluster(kube, kube_namespace)


@pytest.fixture
def storage_url(operator_pg, kube_namespace) -> str:
    return operator_pg.create_database(kube_namespace.replace("-", "_"))


@pytest.fixture
def gpu_queue(kueue, kube, kube_namespace, control_plane):
    """ResourceFlavor, ClusterQueue (2 GPUs; preempts lower priority within it), LocalQueue `gpus`,
    a WorkloadPriorityClass `nova-test-high`."""
    custom = k8s.CustomObjectsApi(kube)
    cq, flavor = f"{kube_namespace}-cq", f"{kube_namespace}-gpu"
    custom.create_cluster_custom_object(*KUEUE, "resourceflavors", {
        "apiVersion": "/".join(KUEUE), "kind": "ResourceFlavor", "metadata": {"name": flavor}, "spec": {}})
    custom.create_cluster_custom_object(*KUEUE, "clusterqueues", {
        "apiVersion": "/".join(KUEUE), "kind": "ClusterQueue", "metadata": {"name": cq},
        "spec": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": kube_namespace}},
                 "preemption": {"withinClusterQueue": "LowerPriority"},
                 "resourceGroups": [{"coveredResources": ["cpu", "memory", "nvidia.com/gpu"], "flavors": [
                     {"name": flavor, "resources": [{"name": "cpu", "nominalQuota": "100"},
                                                    {"name": "memory", "nominalQuota": "1000Gi"},
                                                    {"name": "nvidia.com/gpu", "nominalQuota": 2}]}]}]}})
    custom.create_namespaced_custom_object(*KUEUE, kube_namespace, "localqueues", {
        "apiVersion": "/".join(KUEUE), "kind": "LocalQueue", "metadata": {"name": QUEUE},
        "spec": {"clusterQueue": cq}})
    try:
        custom.create_cluster_custom_object(*KUEUE, "workloadpriorityclasses", {
            "apiVersion": "/".join(KUEUE), "kind": "WorkloadPriorityClass", "metadata": {"name": HIGH},
            "value": 1000, "description": "a run that may preempt the others"})
    except ApiException as exc:
        if exc.status != 409:
            raise

    def active(cond_type: str = "Active") -> bool:
        got = custom.get_cluster_custom_object(*KUEUE, "clusterqueues", cq)
        return any(c["type"] == cond_type and c["status"] == "True" for c in (got.get("status") or {}).get(
            "conditions") or [])

    wait_for(active, f"ClusterQueue {cq} active", diagnose_kueue=kueue)
    yield cq
    control_plane.kubectl("delete", "trainingruns", "--all", "-n", kube_namespace, "--wait=false", check=False)
    for plural, name in (("clusterqueues", cq), ("resourceflavors", flavor)):
        control_plane.kubectl("delete", f"{plural}.kueue.x-k8s.io", name, "--wait=false", check=False)


def wait_for(check, what, timeout: float = 90, op=None, diagnose_kueue=None):
    """tests.support.waiting.wait_for, showing the operator's and Kueue's last lines on a timeout."""
    def diagnose() -> str:
        out = op.output()[-2500:] if op else ""
        if diagnose_kueue is not None:
            out += "\n--- kueue ---\n" + diagnose_kueue.log_tail(30)
        return out
    return support_wait_for(check, what, timeout, diagnose=diagnose)


def queued_run(name: str, **spec) -> dict:
    """One symbol, 3 trials, one 1-GPU worker (unless `tuning` says otherwise), in queue `gpus`."""
    body = {"queueName": QUEUE, "data": {"symbols": ["AAA"]}, "tuning": {"trials": 3, "workers": 1}}
    for key, value in spec.items():
        body[key] = {**body.get(key, {}), **value} if isinstance(value, dict) else value
    return run_body(name, **body)


def workload_of(cluster: Cluster, job: str) -> dict | None:
    uid = cluster.job(job).metadata.uid
    items = cluster.custom.list_namespaced_custom_object(*KUEUE, cluster.ns, "workloads",
                                                         label_selector=f"{JOB_UID_LABEL}={uid}")["items"]
    return items[0] if items else None


def admitted(cluster: Cluster, run: str) -> bool:
    """Kueue started the run's worker Job, and the run says so."""
    job = cluster.job(f"{run}-workers")
    return job.spec.suspend is False and _cond(cluster, run, "Admitted").get("status") == "True"


def _cond(cluster: Cluster, run: str, ctype: str) -> dict:
    return next((c for c in (cluster.run(run).get("status") or {}).get("conditions") or [] if c["type"] == ctype), {})


def live_pods(cluster: Cluster, job: str) -> list:
    return [p for p in cluster.pods(job) if not p.metadata.deletion_timestamp]


def finish_workers(cluster: Cluster, url: str, run: str, trials: list[float]) -> None:
    """Play the worker: the rest of the budget, then its pod exits 0."""
    add_trials(url, f"{cluster.ns}.{run}.AAA", trials)
    for pod in live_pods(cluster, f"{run}-workers"):
        cluster.core.patch_namespaced_pod(pod.metadata.name, cluster.ns, {"metadata": {"annotations": {
            KWOK_EXIT_CODE_ANNOTATION: "0"}}})


def test_three_runs_on_two_gpus_one_waits_queued_and_a_higher_priority_run_preempts(
        cluster, operator, storage_url, gpu_nodes, gpu_queue, kueue):
    cluster.secret("optuna", storage_url)
    op = operator()
    for name in ("a", "b", "c"):
        cluster.create_run(queued_run(name))
    for name in ("a", "b", "c"):
        job = wait_for(lambda n=name: cluster.job(f"{n}-workers"), f"{name}'s worker Job", op=op)
        assert job.metadata.labels[QUEUE_LABEL] == QUEUE

    def split() -> tuple[list[str], list[str]] | None:
        phases = {n: cluster.phase(n) for n in ("a", "b", "c")}
        up = [n for n in phases if admitted(cluster, n)]
        waiting = [n for n, p in phases.items() if p == "Queued"]
        return (up, waiting) if len(up) == 2 and len(waiting) == 1 else None

    up, (third,) = wait_for(split, "two runs admitted, one Queued", op=op, diagnose_kueue=kueue)
    status = cluster.run(third)["status"]
    cond = _cond(cluster, third, "Admitted")
    assert cond["status"] == "False" and cond["reason"] == "Pending", cond
    # Kueue's own words: which resource the ClusterQueue lacks
    assert "nvidia.com/gpu" in cond["message"] and "quota" in cond["message"], cond["message"]
    assert f"LocalQueue '{QUEUE}'" in cond["message"] and status["message"] == cond["message"]
    assert cluster.job(f"{third}-workers").spec.suspend is True and not live_pods(cluster, f"{third}-workers")
    for n in up:
        wait_for(lambda n=n: cluster.phase(n) == "Preparing" and len(live_pods(cluster, f"{n}-workers")) == 1,
                 f"{n} Preparing with its pod", op=op)
        pod = live_pods(cluster, f"{n}-workers")[0]
        assert pod.spec.node_name in gpu_nodes

    # one of the two goes: the third is admitted and starts
    gone, kept = up
    cluster.custom.delete_namespaced_custom_object("nova.dev", "v1alpha1", cluster.ns, "trainingruns", gone)
    wait_for(lambda: admitted(cluster, third), f"{third} admitted once {gone} is gone", op=op, diagnose_kueue=kueue)
    wait_for(lambda: cluster.phase(third) == "Preparing", f"{third} Preparing", op=op)
    add_trials(storage_url, f"{cluster.ns}.{third}.AAA", [0.61])
    wait_for(lambda: cluster.run(third)["status"].get("trials") == "1/3", f"{third} 1/3", op=op)
    victim = third

    # a higher-priority run: Kueue preempts a lower one (priority 0 both; the one admitted last goes)
    cluster.create_run(queued_run("vip", scheduling={"workloadPriorityClassName": HIGH}))
    wait_for(lambda: admitted(cluster, "vip"), "vip admitted by preempting a lower-priority run", op=op,
             diagnose_kueue=kueue)
    preempted = [n for n in (kept, victim) if cluster.job(f"{n}-workers").spec.suspend]
    assert len(preempted) == 1, preempted
    victim = preempted[0]
    events = {e.reason for e in cluster.core.list_namespaced_event(
        cluster.ns, field_selector=f"involvedObject.name={victim}-workers").items}
    assert "Stopped" in events or "Suspended" in events, events
    wait_for(lambda: cluster.phase(victim) == "Queued", f"{victim} Queued after its preemption", op=op)
    conditions = workload_of(cluster, f"{victim}-workers")["status"]["conditions"]
    evicted = next(c for c in conditions if c["type"] == "Evicted")
    assert evicted["status"] == "True" and evicted["reason"] == "Preempted", evicted
    wait_for(lambda: not live_pods(cluster, f"{victim}-workers"), f"{victim}'s pod gone", op=op)
    trials_before = cluster.run(victim)["status"]["trials"]

    # vip finishes (its refit, higher priority, goes before the preempted run) ...
    wait_for(lambda: len(live_pods(cluster, "vip-workers")) == 1, "vip's pod", op=op)
    finish_workers(cluster, storage_url, "vip", [0.7, 0.71, 0.72])
    wait_for(lambda: cluster.job("vip-refit"), "vip's refit Job", op=op)
    assert cluster.job("vip-refit").metadata.labels[QUEUE_LABEL] == QUEUE
    wait_for(lambda: cluster.job("vip-refit").spec.suspend is False, "vip's refit admitted", op=op,
             diagnose_kueue=kueue)
    finish_refit_pod(cluster, "vip-refit", {"AAA": {"best_value": 0.72, "metrics": {"auc": 0.7}, "model": "AAA.ubj"}})
    wait_for(lambda: cluster.phase("vip") == "Succeeded", "vip Succeeded", op=op)

    # ... then the preempted run is admitted again and resumes with what it had finished
    wait_for(lambda: admitted(cluster, victim), f"{victim} admitted again", op=op, diagnose_kueue=kueue)
    wait_for(lambda: len(live_pods(cluster, f"{victim}-workers")) == 1, f"{victim}'s pod back", op=op)
    assert cluster.run(victim)["status"]["trials"] == trials_before
    finish_workers(cluster, storage_url, victim, [0.5, 0.52, 0.55][int(trials_before.split("/")[0]):])
    wait_for(lambda: cluster.job(f"{victim}-refit").spec.suspend is False, f"{victim}'s refit admitted", op=op,
             timeout=120, diagnose_kueue=kueue)
    finish_refit_pod(cluster, f"{victim}-refit", {"AAA": {"best_value": 0.61, "metrics": {}, "model": "AAA.ubj"}})
    wait_for(lambda: cluster.phase(victim) == "Succeeded", f"{victim} Succeeded", op=op)
    status = cluster.run(victim)["status"]
    assert status["trials"] == "3/3" and status["studies"][0]["complete"] == 3  # budget met, nothing lost


def test_user_suspend_holds_a_queued_run_and_frees_its_quota_resume_leaves_the_start_to_kueue(
        cluster, operator, storage_url, gpu_nodes, gpu_queue, kueue):
    cluster.secret("optuna", storage_url)
    op = operator()
    cluster.create_run(queued_run("s1", tuning={"workers": 2}))  # both GPUs
    wait_for(lambda: admitted(cluster, "s1"), "s1 admitted (2 GPUs)", op=op, diagnose_kueue=kueue)
    cluster.create_run(queued_run("s2"))
    wait_for(lambda: cluster.phase("s2") == "Queued", "s2 Queued behind s1", op=op)

    cluster.patch_run("s1", {"suspend": True})
    wl = wait_for(lambda: (w := workload_of(cluster, "s1-workers")) and w["spec"].get("active") is False and w,
                  "s1's Workload held (deactivated) by Nova", op=op)
    assert wl["metadata"]["annotations"][HOLD_ANNOTATION] == "true"
    wait_for(lambda: cluster.job("s1-workers").spec.suspend is True, "Kueue stops s1's Job", op=op)
    wait_for(lambda: cluster.phase("s1") == "Suspended", "s1 Suspended", op=op)
    wait_for(lambda: admitted(cluster, "s2"), "s2 admitted on the quota s1 freed", op=op, diagnose_kueue=kueue)

    # resume: Nova lifts its hold only; Kueue has 1 GPU free, s1 needs 2: it waits, suspended
    cluster.patch_run("s1", {"suspend": False})
    wait_for(lambda: (workload_of(cluster, "s1-workers") or {}).get("spec", {}).get("active") is True,
             "s1's Workload active again", op=op)
    wait_for(lambda: cluster.phase("s1") == "Queued", "s1 Queued (1 GPU free, 2 needed)", op=op)
    assert cluster.job("s1-workers").spec.suspend is True
    assert HOLD_ANNOTATION not in (workload_of(cluster, "s1-workers")["metadata"].get("annotations") or {})
    cluster.custom.delete_namespaced_custom_object("nova.dev", "v1alpha1", cluster.ns, "trainingruns", "s2")
    wait_for(lambda: admitted(cluster, "s1"), "s1 admitted once s2 is gone", op=op, diagnose_kueue=kueue)
    wait_for(lambda: len(live_pods(cluster, "s1-workers")) == 2, "s1's 2 pods", op=op)

    # created suspended: its Job is not Kueue's until resumed (no label, no Workload to admit)
    cluster.create_run(queued_run("s3", suspend=True))
    job = wait_for(lambda: cluster.job("s3-workers"), "s3's Job", op=op)
    assert job.spec.suspend is True and QUEUE_LABEL not in (job.metadata.labels or {})
    wait_for(lambda: cluster.phase("s3") == "Suspended", "s3 Suspended", op=op)
    assert workload_of(cluster, "s3-workers") is None
    cluster.patch_run("s3", {"suspend": False})
    wait_for(lambda: QUEUE_LABEL in (cluster.job("s3-workers").metadata.labels or {}), "s3 released to Kueue", op=op)
    wait_for(lambda: cluster.phase("s3") == "Queued" and _cond(cluster, "s3", "Admitted").get("reason") == "Pending",
             "s3 Queued with Kueue's reason", op=op, diagnose_kueue=kueue)
