"""Status transitions, computed from observed Jobs and study progress, without a cluster."""

from __future__ import annotations

import datetime as dt
import json

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from nova.errors import StorageError
from nova.spec import ResolvedRun, TrainingRunSpec
from nova.status import RunStatus
from nova_operator import studies
from nova_operator.decision import JobState, Observed, Problem, StudyProgress, decide
from nova_operator.queueing import Admission

T0 = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
T1 = T0 + dt.timedelta(minutes=5)


def run(**tuning) -> ResolvedRun:
    spec = {"data": {"symbols": ["AAA", "BBB"]}, "tuning": {"trials": 4, "workers": 2, **tuning}}
    return ResolvedRun(name="r", namespace="ns", generation=3, spec=TrainingRunSpec.model_validate(spec))


def prog(symbol: str, complete=0, pruned=0, failed=0, running=0, best=None) -> StudyProgress:
    return StudyProgress(symbol=symbol, study=f"ns.r.{symbol}", complete=complete, pruned=pruned, failed=failed,
                         running=running, best_value=best, best_params={"eta": 0.1} if best else {})


def job(**status) -> dict:
    conds = status.pop("conditions", [])
    return {"spec": {"suspend": status.pop("suspend", False)},
            "status": {**status, "conditions": [{"type": t, "status": "True", **extra} for t, extra in conds]}}


def go(obs: Observed, previous=None, r=None, now=T0):
    d = decide(r or run(), obs, previous, "/output/ns/r", "r-workers", "r-refit", now=now)
    RunStatus.model_validate(d.status)  # every patch fits the CRD's status schema
    return d


def cond(d, ctype):
    return next(c for c in d.status["conditions"] if c["type"] == ctype)


def test_pending_before_any_job():
    d = go(Observed(studies=[prog("AAA"), prog("BBB")]))
    assert d.status["phase"] == "Pending" and d.status["observedGeneration"] == 3
    assert cond(d, "Ready")["status"] == "False" and cond(d, "Reconciling")["status"] == "True"
    assert d.status["trials"] == "0/8" and d.status["symbols"] == 2
    assert d.events == [("Normal", "Pending", "New -> Pending: waiting for the operator to create the workers")]


def test_preparing_then_running_then_refit():
    workers = JobState.from_job(job(active=2, ready=1))
    d1 = go(Observed(workers=workers, studies=[prog("AAA"), prog("BBB")]))
    assert d1.status["phase"] == "Preparing" and d1.status["workers"]["active"] == 2
    d2 = go(Observed(workers=workers, studies=[prog("AAA", complete=2, running=1, best=0.61), prog("BBB")]),
            previous=d1.status, now=T1)
    assert d2.status["phase"] == "Running" and d2.status["trials"] == "2/8"
    assert d2.status["bestValue"] == 0.61 and d2.status["bestSymbol"] == "AAA"
    assert d2.status["studies"][0]["bestParams"] == [{"name": "eta", "value": "0.1"}]
    assert d2.status["studies"][0]["budget"] == 4
    assert d2.events[0][:2] == ("Normal", "Tuning") and not d2.create_refit
    done = [prog("AAA", complete=3, pruned=1, best=0.61), prog("BBB", complete=2, failed=2, best=0.58)]
    d3 = go(Observed(workers=workers, studies=done), previous=d2.status, now=T1)
    assert d3.create_refit and d3.status["phase"] == "Refitting"
    assert cond(d3, "TuningComplete") == {**cond(d3, "TuningComplete"), "status": "True", "reason": "BudgetReached"}


def test_a_study_at_budget_with_a_running_trial_is_not_done():
    d = go(Observed(workers=JobState.from_job(job(active=1)),
                    studies=[prog("AAA", complete=4, running=1, best=0.5), prog("BBB", complete=4, best=0.5)]))
    assert not d.create_refit and d.status["phase"] == "Running"


def test_best_follows_the_metric_direction():
    d = go(Observed(workers=JobState.from_job(job(active=1)),
                    studies=[prog("AAA", complete=1, best=0.7), prog("BBB", complete=1, best=0.3)]),
           r=run(metric="logloss"))
    assert d.status["bestValue"] == 0.3 and d.status["bestSymbol"] == "BBB"


def test_succeeded_reads_the_refit_summary():
    summary = {"AAA": {"best_value": 0.61, "metrics": {"auc": 0.6, "accuracy": 0.55}, "model": "AAA/model.ubj"},
               "BBB": {"error": "BBB: study has no complete trial"}}
    obs = Observed(workers=JobState.from_job(job(succeeded=2, conditions=[("Complete", {})])),
                   refit=JobState.from_job(job(succeeded=1, conditions=[("Complete", {})]), json.dumps(summary)),
                   studies=[prog("AAA", complete=4, best=0.61), prog("BBB", complete=4, best=0.5)])
    d = go(obs, previous={"phase": "Refitting", "startTime": "2026-01-01T00:00:00Z"})
    assert d.status["phase"] == "Succeeded"
    assert d.status["model"]["uri"] == "/output/ns/r"
    aaa, bbb = d.status["model"]["symbols"]
    assert aaa == {"symbol": "AAA", "uri": "/output/ns/r/AAA", "file": "AAA/model.ubj", "bestValue": 0.61,
                   "metrics": {"auc": 0.6, "accuracy": 0.55}}
    assert bbb["error"].startswith("BBB:")
    assert cond(d, "Ready")["status"] == "True" and cond(d, "Reconciling")["status"] == "False"
    assert d.status["completionTime"] == "2026-01-02T03:04:05Z" and d.status["startTime"] == "2026-01-01T00:00:00Z"
    assert d.status["message"].startswith("refitted 1/2 symbols")


def test_refit_summary_brings_dsr_pbo_and_holdout_per_symbol():
    ev = {"selection": "deflated", "trial": 7, "trials": 40, "sharpeGross": 1.2, "sharpeNet": 1.1, "dsr": 0.42,
          "expectedMaxSharpe": 1.9, "pbo": 0.55, "holdoutSharpeNet": -0.3, "buyHoldSharpe": 0.8,
          "note": "effectively constant: long on 99% of test bars"}
    summary = {"AAA": {"best_value": 0.61, "metrics": {"auc": 0.6}, "model": "AAA.ubj", "evaluation": ev},
               "BBB": {"best_value": 0.5, "metrics": {}, "model": "BBB.ubj", "evaluation": {"dsr": "high"}}}
    obs = Observed(workers=JobState.from_job(job(succeeded=2, conditions=[("Complete", {})])),
                   refit=JobState.from_job(job(succeeded=1, conditions=[("Complete", {})]), json.dumps(summary)),
                   studies=[prog("AAA", complete=4, best=0.61), prog("BBB", complete=4, best=0.5)])
    aaa, bbb = go(obs, previous={"phase": "Refitting"}).status["model"]["symbols"]
    assert aaa["evaluation"] == ev
    assert "evaluation" not in bbb  # not of the expected shape: left out, never guessed


def test_unreadable_summary_gives_best_values_but_no_invented_metrics():
    obs = Observed(refit=JobState.from_job(job(conditions=[("Complete", {})]), "not json"),
                   studies=[prog("AAA", complete=4, best=0.61), prog("BBB", complete=4, best=0.5)])
    d = go(obs)
    assert d.status["model"]["symbols"][0] == {"symbol": "AAA", "bestValue": 0.61, "metrics": {}}


def test_missing_secret_waits_with_what_to_do_and_is_not_terminal():
    problem = Problem("SecretNotFound", "waiting for Secret 'db' (named by spec.tuning.storage.secretRef)", retry=True)
    d = go(Observed(problem=problem))
    assert d.status["phase"] == "Pending" and "completionTime" not in d.status
    assert cond(d, "Stalled")["status"] == "False"
    reconciling = cond(d, "Reconciling")
    assert reconciling["status"] == "True" and reconciling["reason"] == "SecretNotFound"
    assert "'db'" in reconciling["message"]
    assert cond(d, "Ready")["reason"] == "SecretNotFound"
    assert d.events[0][0] == "Warning"
    # the Secret appears: the same run goes on at the next observation
    d2 = go(Observed(studies=[prog("AAA"), prog("BBB")]), previous=d.status, now=T1)
    assert d2.status["phase"] == "Pending" and cond(d2, "Ready")["reason"] == "Pending"


def test_a_failed_run_that_recovers_loses_its_completion_time():
    """ttlSecondsAfterFinished counts from the real end: a run that failed, was fixed and failed
    again later must not keep its first completionTime (it was deleted 10 s after the real end)."""
    failed = go(Observed(problem=Problem("InvalidSpec", "spec is invalid: ..."))).status
    assert failed["phase"] == "Failed" and failed["completionTime"] == "2026-01-02T03:04:05Z"
    recovered = go(Observed(workers=JobState.from_job(job(active=1)), studies=[prog("AAA"), prog("BBB")]),
                   previous=failed, now=T1).status
    assert recovered["phase"] == "Preparing" and "completionTime" not in recovered
    later = dt.datetime(2026, 1, 2, 5, 0, 0, tzinfo=dt.UTC)
    again = go(Observed(problem=Problem("InvalidSpec", "spec is invalid: ...")), previous=recovered, now=later).status
    assert again["completionTime"] == "2026-01-02T05:00:00Z"


def test_transient_storage_problem_keeps_trying_and_keeps_counts():
    previous = go(Observed(workers=JobState.from_job(job(active=2)),
                           studies=[prog("AAA", complete=2, best=0.6), prog("BBB")])).status
    d = go(Observed(workers=JobState.from_job(job(active=2)), studies=None,
                    problem=Problem("StorageUnavailable", "cannot reach 127.0.0.1:5432", retry=True)),
           previous=previous, now=T1)
    assert d.status["phase"] == "Running" and cond(d, "Reconciling")["reason"] == "StorageUnavailable"
    assert d.status["trials"] == "2/8" and d.status["studies"][0]["complete"] == 2
    assert d.events == []


def test_workers_failing_past_the_backoff_limit_fail_the_run():
    failed = JobState.from_job(job(failed=3, conditions=[("Failed", {"reason": "FailedIndexes",
                                                                      "message": "Job has failed indexes"})]))
    d = go(Observed(workers=failed, studies=[prog("AAA", complete=1, best=0.5), prog("BBB")]))
    assert d.status["phase"] == "Failed" and cond(d, "Stalled")["reason"] == "WorkersFailed"
    assert "kubectl logs job/r-workers -c trainer" in d.status["message"]
    assert "FailedIndexes" in d.status["message"]


def test_workers_finished_without_a_complete_trial():
    done = JobState.from_job(job(succeeded=2, conditions=[("Complete", {})]))
    d = go(Observed(workers=done, studies=[prog("AAA", failed=4), prog("BBB", complete=4, best=0.5)]))
    assert d.status["phase"] == "Failed" and cond(d, "Stalled")["reason"] == "NoCompleteTrial"
    assert "AAA" in d.status["message"] and "BBB" not in d.status["message"].split("for ")[1].split(":")[0]


def test_timeout_ends_tuning_early_and_refits_what_there_is():
    done = JobState.from_job(job(succeeded=2, conditions=[("Complete", {})]))
    d = go(Observed(workers=done, studies=[prog("AAA", complete=2, best=0.5), prog("BBB", complete=1, best=0.4)]))
    assert d.create_refit and cond(d, "TuningComplete")["reason"] == "WorkersFinished"


def test_suspended():
    d = go(Observed(workers=JobState.from_job(job(suspend=True)), studies=[prog("AAA", complete=1), prog("BBB")]),
           r=run().model_copy(update={"spec": run().spec.model_copy(update={"suspend": True})}))
    assert d.status["phase"] == "Suspended" and cond(d, "Suspended")["status"] == "True"
    assert cond(d, "Reconciling")["status"] == "False"


def test_last_transition_time_moves_only_on_change():
    obs = Observed(workers=JobState.from_job(job(active=1)), studies=[prog("AAA", complete=1), prog("BBB")])
    d1 = go(obs)
    d2 = go(obs, previous=d1.status, now=T1)
    assert cond(d2, "Ready")["lastTransitionTime"] == cond(d1, "Ready")["lastTransitionTime"] == "2026-01-02T03:04:05Z"
    assert d2.events == []
    done = [prog("AAA", complete=4, best=0.5), prog("BBB", complete=4, best=0.5)]
    d3 = go(Observed(workers=obs.workers, studies=done),
            previous=d2.status, now=T1)
    assert cond(d3, "TuningComplete")["lastTransitionTime"] == "2026-01-02T03:09:05Z"
    assert cond(d3, "Ready")["lastTransitionTime"] == "2026-01-02T03:04:05Z"  # still False


def test_succeeded_is_final():
    prev = {"phase": "Succeeded", "message": "model ready", "completionTime": "2026-01-01T00:00:00Z",
            "model": {"uri": "/o", "symbols": []}}
    d = go(Observed(studies=[prog("AAA"), prog("BBB")]), previous=prev)
    assert d.status["phase"] == "Succeeded" and d.status["model"]["uri"] == "/o" and not d.create_refit
    assert d.status["completionTime"] == "2026-01-01T00:00:00Z"


@pytest.fixture
def storage(tmp_path):
    return optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'o.db'}")


def test_studies_created_up_front_and_progress_counted_like_the_trainer(storage):
    r = run()
    store = studies.Studies()
    assert store.create_studies(r, storage) == ["ns.r.AAA", "ns.r.BBB"]
    assert store.create_studies(r, storage) == []  # idempotent: both exist, nothing made
    assert [p.finished for p in store.read_progress(r, storage)] == [0, 0] == \
        [p.finished for p in studies.empty_progress(r)]
    study = optuna.load_study(study_name="ns.r.AAA", storage=storage)
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE and not study.trials
    dist = {"eta": FloatDistribution(0.01, 0.3)}
    for value in (0.55, 0.62):
        study.add_trial(create_trial(params={"eta": value / 10}, distributions=dist, value=value))
    study.add_trial(create_trial(state=TrialState.PRUNED, params={"eta": 0.1}, distributions=dist,
                                 intermediate_values={1: 0.3}))
    study.add_trial(create_trial(state=TrialState.FAIL, params={"eta": 0.1}, distributions=dist))
    retried = create_trial(state=TrialState.FAIL, params={"eta": 0.1}, distributions=dist)
    study.add_trial(retried)
    replacement = create_trial(state=TrialState.WAITING, params={}, distributions={},
                               system_attrs={"retry_history": [4]})
    study.add_trial(replacement)
    aaa, bbb = store.read_progress(r, storage)
    assert (aaa.complete, aaa.pruned, aaa.failed, aaa.waiting) == (2, 1, 1, 1)
    assert aaa.best_value == 0.62 and aaa.best_params == {"eta": pytest.approx(0.062)}
    assert not aaa.done(4)  # a queued retry still has to run
    assert bbb.exists and bbb.finished == 0
    assert store.delete_studies(r, storage) == ["ns.r.AAA", "ns.r.BBB"]
    assert [p.exists for p in store.read_progress(r, storage)] == [False, False]


def test_storage_errors_name_the_host_not_the_password():
    with pytest.raises(Exception) as err:
        studies.Studies().open_storage("postgresql://nova:hunter2@127.0.0.1:1/nova")
    text = str(err.value)
    assert "127.0.0.1:1" in text and "hunter2" not in text
    assert isinstance(err.value, StorageError) and err.value.permanent is False  # refused: may come back


def test_status_patch_sends_only_what_changed():
    from nova_operator.decision import status_patch

    old = {"phase": "Running", "trials": "3/8", "message": "m", "bestValue": 0.5}
    assert status_patch(old, dict(old)) == {}
    assert status_patch(old, {**old, "trials": "4/8"}) == {"trials": "4/8"}
    assert status_patch(old, {"phase": "Running", "trials": "3/8", "message": "m"}) == {"bestValue": None}
    assert status_patch(None, {"phase": "Pending"}) == {"phase": "Pending"}


def test_a_run_without_progress_says_what_to_look_at():
    """`Preparing 0/8` for half an hour told a newcomer nothing; past progressDeadlineSeconds the
    Progressing condition says where to look, once, with a Warning Event."""
    r = run()
    r.spec.progress_deadline_seconds = 600
    preparing = Observed(workers=JobState.from_job(job(active=2, ready=0)), studies=[prog("AAA"), prog("BBB")])
    first = go(preparing, r=r)
    assert first.status["phase"] == "Preparing" and cond(first, "Progressing")["status"] == "True"
    assert first.status["lastProgressTime"] == "2026-01-02T03:04:05Z"
    late = T0 + dt.timedelta(minutes=11)
    stuck = go(preparing, previous=first.status, r=r, now=late)
    progressing = cond(stuck, "Progressing")
    assert progressing["status"] == "False" and progressing["reason"] == "ProgressDeadlineExceeded"
    assert "no worker pod has become Ready" in progressing["message"] and "nvidia.com/gpu" in progressing["message"]
    assert ("Warning", "ProgressDeadlineExceeded", progressing["message"]) in stuck.events
    again = go(preparing, previous=stuck.status, r=r, now=late + dt.timedelta(minutes=1))
    assert not again.events  # said once
    moving = Observed(workers=JobState.from_job(job(active=2, ready=2)), studies=[prog("AAA", running=1), prog("BBB")])
    moved = go(moving, previous=again.status, r=r, now=late + dt.timedelta(minutes=2))
    assert moved.status["phase"] == "Running" and cond(moved, "Progressing")["status"] == "True"


# ------------------------------------------------------------------------------------- Kueue
def queued(**kw) -> Admission:
    return Admission(**{"queue": "gpus", "workload": "job-r-workers-abc12", "reason": "Pending",
                        "message": "couldn't assign flavors to pod set main: insufficient unused quota for "
                                   "nvidia.com/gpu in flavor gpu, 1 more needed", **kw})


def test_a_job_waiting_in_a_kueue_queue_is_queued_with_kueues_reason():
    suspended = JobState.from_job(job(suspend=True, conditions=[("Suspended", {})]))
    d = go(Observed(workers=suspended, studies=[prog("AAA"), prog("BBB")], workers_queue=queued()))
    assert d.status["phase"] == "Queued"
    admitted = cond(d, "Admitted")
    assert admitted["status"] == "False" and admitted["reason"] == "Pending"
    assert "LocalQueue 'gpus'" in admitted["message"] and "insufficient unused quota for nvidia.com/gpu" in \
        admitted["message"]
    assert d.status["message"] == admitted["message"]
    # waiting on Kueue is not a lack of progress of the pods, however long it takes
    later = go(Observed(workers=suspended, studies=[prog("AAA"), prog("BBB")], workers_queue=queued()),
               previous=d.status, now=T0 + dt.timedelta(hours=3))
    assert later.status["phase"] == "Queued" and cond(later, "Progressing")["status"] == "True"
    assert cond(later, "Reconciling")["status"] == "True" and cond(later, "Stalled")["status"] == "False"
    assert d.events[0][:2] == ("Normal", "Pending")


def test_admitted_then_preempted_then_admitted_again():
    running = JobState.from_job(job(active=1, ready=1))
    ok = Admission(queue="gpus", workload="w", admitted=True, cluster_queue="gpu-cq", reason="Admitted")
    studies = [prog("AAA", complete=1, running=1, best=0.6), prog("BBB")]
    d1 = go(Observed(workers=running, studies=studies, workers_queue=ok))
    assert d1.status["phase"] == "Running" and cond(d1, "Admitted")["status"] == "True"
    assert "ClusterQueue 'gpu-cq'" in cond(d1, "Admitted")["message"]
    preempted = queued(reason="Preempted", message="Preempted to accommodate a workload (UID: u) due to "
                       "prioritization in the ClusterQueue")
    d2 = go(Observed(workers=JobState.from_job(job(suspend=True)), studies=studies, workers_queue=preempted),
            previous=d1.status, now=T1)
    assert d2.status["phase"] == "Queued" and cond(d2, "Admitted")["reason"] == "Preempted"
    assert d2.status["trials"] == "1/8"  # finished trials stay
    d3 = go(Observed(workers=running, studies=studies, workers_queue=ok), previous=d2.status, now=T1)
    assert d3.status["phase"] == "Running"


def test_user_suspend_wins_over_the_queue():
    d = go(Observed(workers=JobState.from_job(job(suspend=True)), studies=[prog("AAA"), prog("BBB")],
                    workers_queue=queued(reason="Held", message="not yet released")), r=run_with(suspend=True))
    assert d.status["phase"] == "Suspended"


def test_a_queued_refit_is_queued_then_refitting():
    done = [prog("AAA", complete=4, best=0.6), prog("BBB", complete=4, best=0.5)]
    workers = JobState.from_job(job(succeeded=2, conditions=[("Complete", {})]))
    refit = JobState.from_job(job(suspend=True))
    d = go(Observed(workers=workers, refit=refit, studies=done, refit_queue=queued(workload="job-r-refit-1")))
    assert d.status["phase"] == "Queued" and "r-refit" in cond(d, "Admitted")["message"]
    d2 = go(Observed(workers=workers, refit=JobState.from_job(job(active=1)), studies=done,
                     refit_queue=Admission(queue="gpus", admitted=True, reason="Admitted")), previous=d.status)
    assert d2.status["phase"] == "Refitting"


def test_a_run_without_a_queue_has_no_admitted_condition():
    d = go(Observed(workers=JobState.from_job(job(active=1)), studies=[prog("AAA"), prog("BBB")]))
    assert "Admitted" not in {c["type"] for c in d.status["conditions"]}


def run_with(**spec) -> ResolvedRun:
    base = {"data": {"symbols": ["AAA", "BBB"]}, "tuning": {"trials": 4, "workers": 2}, **spec}
    return ResolvedRun(name="r", namespace="ns", generation=3, spec=TrainingRunSpec.model_validate(base))
