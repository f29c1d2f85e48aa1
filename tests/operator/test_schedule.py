"""TrainingSchedule on the real control plane: a one-minute cron makes runs one after another, each
warm-started from the last successful one (its study holds the previous run's best trials, enqueued
before the sampler's own), and an operator killed right after it created a tick's run (before its
status was written) makes no second run for that tick.

As in test_operator.py, pods go to kwok nodes and do not run: the test plays the workers by writing
trials into the studies the operator created, and the kubelet for the refit pod's exit."""

from __future__ import annotations

import datetime as dt

import optuna
import pytest
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from nova.warm_start import WARM_START_ATTR
from tests.cluster.fixtures import KWOK_EXIT_CODE_ANNOTATION
from tests.operator.test_operator import GROUP, VERSION, Cluster, finish_refit_pod, run_body, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.integration, pytest.mark.slow]
SCHEDULES = "trainingschedules"


@pytest.fixture(name="cluster")
def _cluster(kube, kube_namespace) -> Cluster:
    return Cluster(kube, kube_namespace)


@pytest.fixture(name="storage_url")
def _storage_url(operator_pg, kube_namespace) -> str:
    return operator_pg.create_database(kube_namespace.replace("-", "_"))


def schedule_body(name: str) -> dict:
    template = run_body("x")["spec"]
    template["data"] = {"source": "synthetic", "symbols": ["AAA"], "bars": 900, "lookback": "5y", "end": "latest"}
    template["tuning"] = {**template["tuning"], "trials": 4, "workers": 1,
                          "searchSpace": {"eta": {"type": "float", "low": 0.01, "high": 0.3},
                                          "max_depth": {"type": "int", "low": 2, "high": 6}}}
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainingSchedule", "metadata": {"name": name},
            "spec": {"schedule": "* * * * *", "timeZone": "Europe/Berlin", "warmStart": {"topK": 2},
                     "successfulRunsHistoryLimit": 5, "runTemplate": template}}


def runs_of(cluster, schedule: str) -> list[dict]:
    items = cluster.custom.list_namespaced_custom_object(GROUP, VERSION, cluster.ns, "trainingruns",
                                                         label_selector=f"nova.dev/schedule={schedule}")["items"]
    return sorted(items, key=lambda r: r["metadata"]["name"])


def get_schedule(cluster, name: str) -> dict:
    return cluster.custom.get_namespaced_custom_object(GROUP, VERSION, cluster.ns, SCHEDULES, name)


TRIALS = [(0.10, 3, 0.58), (0.20, 5, 0.66), (0.05, 2, 0.61), (0.25, 4, 0.52)]  # (eta, max_depth, value)


def play_run(cluster, storage_url: str, run: str, op) -> None:
    """The workers tune (four trials), exit 0; the refit pod succeeds: the run Succeeded."""
    wait_for(lambda: cluster.phase(run) in ("Preparing", "Running"), f"{run} Preparing", op=op)
    study = optuna.load_study(study_name=f"{cluster.ns}.{run}.AAA", storage=storage_url)
    dist = {"eta": FloatDistribution(0.01, 0.3), "max_depth": IntDistribution(2, 6)}
    for eta, depth, value in TRIALS:
        study.add_trial(create_trial(params={"eta": eta, "max_depth": depth}, distributions=dist, value=value))
    for pod in cluster.pods(f"{run}-workers"):
        cluster.core.patch_namespaced_pod(pod.metadata.name, cluster.ns, {"metadata": {"annotations": {
            KWOK_EXIT_CODE_ANNOTATION: "0"}}})
    wait_for(lambda: cluster.phase(run) == "Refitting", f"{run} Refitting", timeout=90, op=op)
    finish_refit_pod(cluster, f"{run}-refit",
                     {"AAA": {"best_value": 0.66, "metrics": {"auc": 0.6}, "model": "AAA.ubj"}})
    wait_for(lambda: cluster.phase(run) == "Succeeded", f"{run} Succeeded", timeout=90, op=op)


def test_a_one_minute_schedule_makes_warm_started_runs_once_per_tick(cluster, operator, storage_url, control_plane):
    cluster.secret("optuna", storage_url)
    # an operator that dies right after creating the first tick's run, before the schedule's status
    crashing = operator(NOVA_FAILPOINT="schedule-after-create")
    cluster.custom.create_namespaced_custom_object(GROUP, VERSION, cluster.ns, SCHEDULES, schedule_body("sched"))
    wait_for(lambda: crashing.proc.poll() is not None, "the operator to die at the failpoint", timeout=90, op=crashing)
    (first,) = runs_of(cluster, "sched")
    first_name = first["metadata"]["name"]
    assert not (get_schedule(cluster, "sched").get("status") or {}).get("lastScheduleTime")  # never written
    tick = dt.datetime.strptime(first_name.rsplit("-", 1)[1], "%Y%m%d%H%M").replace(tzinfo=dt.UTC)
    assert first["metadata"]["annotations"]["nova.dev/scheduled-time"] == f"{tick:%Y-%m-%dT%H:%M:%SZ}"
    assert first["metadata"]["ownerReferences"][0]["kind"] == "TrainingSchedule"
    today = tick.astimezone(dt.timezone(dt.timedelta(hours=1))).date()  # Berlin in winter: UTC+1
    assert first["spec"]["data"]["end"] == today.isoformat()
    assert first["spec"]["data"]["start"] == today.replace(year=today.year - 5).isoformat()
    assert "warmStartFrom" not in first["spec"]["tuning"]

    op = operator()  # the restart, still within the first tick's minute or after it
    status = wait_for(lambda: (get_schedule(cluster, "sched").get("status") or {}).get("lastScheduleTime") and
                      get_schedule(cluster, "sched")["status"], "the schedule's status", op=op)
    assert status["lastScheduleTime"] == f"{tick:%Y-%m-%dT%H:%M:%SZ}" and status["lastRun"] == first_name
    names = [r["metadata"]["name"] for r in runs_of(cluster, "sched")]
    assert names.count(first_name) == 1 and len(names) == 1, names  # no duplicate for that tick

    play_run(cluster, storage_url, first_name, op)
    # Forbid: the next tick's run comes only now that the first has finished
    second = wait_for(lambda: next((r for r in runs_of(cluster, "sched") if r["metadata"]["name"] != first_name),
                                   None), "the second run", timeout=130, op=op)
    second_name = second["metadata"]["name"]
    assert second_name > first_name
    assert second["spec"]["tuning"]["warmStartFrom"] == first_name
    assert second["spec"]["tuning"]["warmStart"] == {"topK": 2}

    # its study holds the first run's two best trials, enqueued before anything else
    new_study = wait_for(lambda: _study_with_seeds(storage_url, f"{cluster.ns}.{second_name}.AAA"),
                         "the second run's seeded study", op=op)
    old = optuna.load_study(study_name=f"{cluster.ns}.{first_name}.AAA", storage=storage_url)
    best = sorted((t for t in old.trials if t.state == TrialState.COMPLETE), key=lambda t: -t.value)[:2]
    queued = [t.system_attrs["fixed_params"] for t in new_study.trials[:2]]
    assert queued == [t.params for t in best] == [{"eta": 0.20, "max_depth": 5}, {"eta": 0.05, "max_depth": 2}]
    assert [t.state for t in new_study.trials[:2]] == [TrialState.WAITING] * 2
    assert new_study.user_attrs[WARM_START_ATTR]["from"] == f"{cluster.ns}.{first_name}.AAA"

    status = wait_for(lambda: get_schedule(cluster, "sched")["status"] if get_schedule(cluster, "sched")[
        "status"].get("lastRun") == second_name else None, "status naming the second run", op=op)
    assert status["lastSuccessfulRun"] == first_name and status["active"] == [second_name]
    assert status["activeCount"] == 1
    reasons = {e.reason for e in cluster.core.list_namespaced_event(
        cluster.ns, field_selector="involvedObject.name=sched").items}
    assert "RunCreated" in reasons
    printed = control_plane.kubectl("-n", cluster.ns, "get", "trainingschedules").stdout
    assert "SCHEDULE" in printed and "LAST SCHEDULE" in printed and "ACTIVE" in printed


def _study_with_seeds(url: str, name: str):
    try:
        study = optuna.load_study(study_name=name, storage=url)
    except KeyError:
        return None
    return study if WARM_START_ATTR in study.user_attrs else None
