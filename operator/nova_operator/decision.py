"""A run's status decided from what was observed (the schema it fills is nova.status): pure, so every
transition is unit-tested.

The handlers observe (Jobs, the Optuna studies, Secrets) and patch; this module decides. Conditions
follow the Kubernetes convention (type, status, reason, message, lastTransitionTime,
observedGeneration) and the kstatus one: `Ready` is True only when the run has succeeded,
`Reconciling` is True while it works, `Stalled` is True when it needs a human.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from nova.budget import TrialCounts
from nova.object_store import join, symbol_folder
from nova.spec import ResolvedRun
from nova.status import (
    BestParam,
    Condition,
    ModelStatus,
    RunStatus,
    StudyStatus,
    SymbolEvaluation,
    SymbolModel,
    WorkerStatus,
)
from nova_operator.queueing import Admission


@dataclass(frozen=True, kw_only=True)
class StudyProgress(TrialCounts):
    """One symbol's study as read from the storage (see studies.read_progress), counted by the
    contract's budget rule."""

    symbol: str
    study: str
    exists: bool = True


@dataclass(frozen=True)
class JobState:
    """What the run needs to know of one of its Jobs."""

    exists: bool = False
    active: int = 0
    ready: int = 0
    succeeded: int = 0
    failed: int = 0
    complete: bool = False
    failed_condition: bool = False
    failed_reason: str = ""
    failed_message: str = ""
    suspended: bool = False
    result: str | None = None  # the refit's termination message (its summary.json)

    @classmethod
    def from_job(cls, job: dict[str, Any] | None, result: str | None = None) -> JobState:
        if not job:
            return cls()
        st = job.get("status") or {}
        conds = {c.get("type"): c for c in st.get("conditions") or [] if c.get("status") == "True"}
        failed = conds.get("Failed") or {}
        return cls(exists=True, active=st.get("active") or 0, ready=st.get("ready") or 0,
                   succeeded=st.get("succeeded") or 0, failed=st.get("failed") or 0,
                   complete="Complete" in conds, failed_condition="Failed" in conds,
                   failed_reason=failed.get("reason", ""), failed_message=failed.get("message", ""),
                   suspended="Suspended" in conds or bool((job.get("spec") or {}).get("suspend")),
                   result=result)


@dataclass(frozen=True)
class Problem:
    """Something only the operator can judge, with what to do about it."""

    reason: str
    message: str
    retry: bool = False  # transient (e.g. storage unreachable): the run keeps trying


@dataclass(frozen=True)
class Observed:
    workers: JobState = JobState()
    refit: JobState = JobState()
    studies: list[StudyProgress] | None = None  # None: the storage could not be read this time
    problem: Problem | None = None
    workers_queue: Admission = Admission()  # where each Job stands with Kueue (queueing.admission)
    refit_queue: Admission = Admission()


@dataclass(frozen=True)
class Decision:
    status: dict[str, Any]  # the status patch (camelCase), validated through nova.status.RunStatus
    create_refit: bool = False
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)


def now_iso(now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.UTC)
    return now.astimezone(dt.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def _conditions(previous: list[dict[str, Any]], wanted: list[tuple[str, str, str, str]], generation: int,
                now: str) -> list[dict[str, Any]]:
    """lastTransitionTime moves only when a condition's status changes."""
    before = {c.get("type"): c for c in previous or []}
    out = []
    for ctype, status, reason, message in wanted:
        old = before.get(ctype)
        since = old["lastTransitionTime"] if old and old.get("status") == status and \
            old.get("lastTransitionTime") else now
        out.append(Condition(type=ctype, status=status, reason=reason, message=message,
                             last_transition_time=since, observed_generation=generation)
                   .model_dump(by_alias=True, exclude_none=True))
    return out


def _best(run: ResolvedRun, studies: list[StudyProgress]) -> tuple[float | None, str | None]:
    scored = [(s.best_value, s.symbol) for s in studies if s.best_value is not None]
    if not scored:
        return None, None
    pick = max if run.spec.tuning.resolved_direction == "maximize" else min
    value, symbol = pick(scored, key=lambda vs: vs[0])
    return value, symbol


def _evaluation(item: Any) -> SymbolEvaluation | None:
    """The refit's per-symbol statistics, or None when absent or not of the expected shape."""
    if not isinstance(item, dict):
        return None
    try:
        return SymbolEvaluation.model_validate(item)
    except ValueError:
        return None


def parse_refit_result(run: ResolvedRun, out_uri: str, result: str | None,
                       studies: list[StudyProgress]) -> ModelStatus:
    """status.model from the refit's summary (termination message); best values from the studies
    when the summary could not be read (then metrics are absent, never invented)."""
    summary: dict[str, Any] = {}
    if result:
        try:
            summary = json.loads(result)
        except ValueError:
            summary = {}
    by_symbol = {s.symbol: s for s in studies}
    symbols = []
    for symbol in run.spec.data.symbols:
        item = summary.get(symbol) if isinstance(summary, dict) else None
        study = by_symbol.get(symbol)
        if isinstance(item, dict) and "error" in item:
            symbols.append(SymbolModel(symbol=symbol, error=str(item["error"])[:1000]))
        elif isinstance(item, dict):
            metrics = {k: float(v) for k, v in (item.get("metrics") or {}).items()
                       if isinstance(v, (int, float)) and not isinstance(v, bool)}
            symbols.append(SymbolModel(symbol=symbol, uri=join(out_uri, symbol_folder(symbol)),
                                       file=item.get("model"), best_value=item.get("best_value"),
                                       metrics=metrics, evaluation=_evaluation(item.get("evaluation"))))
        else:
            symbols.append(SymbolModel(symbol=symbol, best_value=study.best_value if study else None))
    return ModelStatus(uri=out_uri, symbols=symbols)


def decide(run: ResolvedRun, obs: Observed, previous: dict[str, Any] | None, out_uri: str,
           workers_job: str, refit_job: str, now: dt.datetime | None = None) -> Decision:
    """The next status of a run, whether to start the refit, and the events of the transition."""
    previous = previous or {}
    stamp = now_iso(now)
    spec = run.spec
    budget = spec.tuning.trials
    studies = obs.studies if obs.studies is not None else None
    old_phase = previous.get("phase")
    status = RunStatus(phase="Pending", observed_generation=run.generation, symbols=len(spec.data.symbols),
                       start_time=previous.get("startTime") or stamp,
                       completion_time=previous.get("completionTime"))
    if previous.get("model"):
        status.model = ModelStatus.model_validate(previous["model"])
    if obs.workers.exists:
        w = obs.workers
        status.workers = WorkerStatus(desired=spec.tuning.workers, active=w.active, ready=w.ready,
                                      succeeded=w.succeeded, failed=w.failed)
    if studies is not None:
        status.studies = [StudyStatus(symbol=s.symbol, study=s.study, budget=budget, complete=s.complete,
                                      pruned=s.pruned, failed=s.failed, running=s.running,
                                      best_value=s.best_value, best_params=best_params(s.best_params))
                          for s in studies]
        finished = sum(s.finished for s in studies)
        status.trials = f"{finished}/{budget * len(spec.data.symbols)}"
        status.best_value, status.best_symbol = _best(run, studies)
    else:  # storage unreadable this time: keep what we knew rather than showing zeros
        status.studies = [StudyStatus.model_validate(s) for s in previous.get("studies") or []]
        status.trials = previous.get("trials")
        status.best_value, status.best_symbol = previous.get("bestValue"), previous.get("bestSymbol")

    all_done = studies is not None and len(studies) > 0 and all(s.done(budget) for s in studies)
    tuning_over = all_done or obs.workers.complete
    no_trial = [s.symbol for s in studies or [] if s.complete == 0]
    create_refit = False
    reason, message = "Pending", "waiting for the operator to create the workers"

    if old_phase in ("Succeeded",) and obs.problem is None:
        status.phase, reason, message = "Succeeded", "Succeeded", previous.get("message") or "model ready"
    elif obs.problem is not None and not obs.problem.retry:
        status.phase, reason, message = "Failed", obs.problem.reason, obs.problem.message
    elif obs.refit.complete:
        status.phase, reason = "Succeeded", "Succeeded"
        status.model = parse_refit_result(run, out_uri, obs.refit.result, studies or [])
        refitted = [m.symbol for m in status.model.symbols if not m.error]
        message = f"refitted {len(refitted)}/{len(spec.data.symbols)} symbols; models in {out_uri}"
    elif obs.refit.failed_condition:
        status.phase, reason = "Failed", "RefitFailed"
        message = (f"the refit Job {refit_job} failed ({obs.refit.failed_reason or 'BackoffLimitExceeded'}): "
                   f"see `kubectl logs job/{refit_job}`; the studies are kept, delete the Job to retry")
    elif obs.refit.exists and obs.refit_queue.waiting:
        status.phase, reason = "Queued", obs.refit_queue.reason
        message = _queued_message(refit_job, obs.refit_queue)
    elif obs.refit.exists:
        status.phase, reason = "Refitting", "Refitting"
        message = f"training the best parameters on all data ({refit_job})"
    elif spec.suspend:
        status.phase, reason = "Suspended", "Suspended"
        message = "suspended: no worker pods run; finished trials are kept and tuning resumes where it was"
    elif obs.problem is not None:  # transient: keep trying, say why
        status.phase = old_phase if old_phase in ("Pending", "Preparing", "Running") else "Pending"
        reason, message = obs.problem.reason, obs.problem.message
    elif tuning_over and no_trial and studies is not None:
        status.phase, reason = "Failed", "NoCompleteTrial"
        message = (f"tuning ended without a complete trial for {', '.join(no_trial)}: see "
                   f"`kubectl logs job/{workers_job} -c trainer` (and -c prep) for why the trials failed")
    elif tuning_over and studies is not None:
        status.phase, reason, create_refit = "Refitting", "TuningComplete", True
        message = f"every study holds its budget of {budget} trials; starting the refit"
    elif obs.workers.failed_condition:
        status.phase, reason = "Failed", "WorkersFailed"
        why = obs.workers.failed_reason or "BackoffLimitExceeded"
        message = (f"worker pods kept failing past the retry limit ({why}"
                   f"{': ' + obs.workers.failed_message if obs.workers.failed_message else ''}): see "
                   f"`kubectl logs job/{workers_job} -c trainer`; finished trials are kept")
    elif obs.workers.exists and obs.workers_queue.waiting:
        status.phase, reason = "Queued", obs.workers_queue.reason
        message = _queued_message(workers_job, obs.workers_queue)
    elif obs.workers.exists:
        started = studies is not None and any(s.finished + s.running > 0 for s in studies)
        if started:
            status.phase, reason = "Running", "Tuning"
            message = f"{status.trials} trials finished with {obs.workers.active} active workers"
        else:
            status.phase, reason = "Preparing", "Preparing"
            message = "worker pods are starting and building features"

    progressing = _progress(run, obs, previous, status, stamp, now, workers_job)
    if status.phase in ("Succeeded", "Failed"):
        status.completion_time = status.completion_time or stamp
    else:  # a run that recovers (an edit, a Secret created) has not finished: its TTL starts again later
        status.completion_time = None
    status.message = message
    ready = ("True", "Succeeded", message) if status.phase == "Succeeded" else ("False", reason, message)
    working = status.phase in ("Pending", "Queued", "Preparing", "Running", "Refitting")
    failed = status.phase == "Failed"
    queue = obs.refit_queue if obs.refit.exists else obs.workers_queue
    admitted = [("Admitted", "True" if queue.admitted else "False", queue.reason or "Pending",
                 _queued_message(refit_job if obs.refit.exists else workers_job, queue))] if queue.queue else []
    status.conditions = [Condition.model_validate(c) for c in _conditions(previous.get("conditions") or [], [
        ("Ready", *ready),
        ("Reconciling", "True" if working else "False", reason if working else status.phase,
         message if working else ""),
        ("Stalled", "True" if failed else "False", reason if failed else "AsExpected", message if failed else ""),
        ("Suspended", "True" if status.phase == "Suspended" else "False",
         "Suspended" if status.phase == "Suspended" else "NotSuspended", ""),
        ("TuningComplete", "True" if tuning_over else "False", "BudgetReached" if all_done else
         ("WorkersFinished" if tuning_over else "Tuning"), ""),
        ("Progressing", *progressing),
        *admitted,
    ], run.generation, stamp)]

    events = []
    was_stuck = any(c.get("type") == "Progressing" and c.get("status") == "False"
                    for c in previous.get("conditions") or [])
    if progressing[0] == "False" and not was_stuck:
        events.append(("Warning", progressing[1], progressing[2]))
    if status.phase != old_phase:
        kind = "Warning" if status.phase == "Failed" or obs.problem is not None else "Normal"
        events.append((kind, reason, f"{old_phase or 'New'} -> {status.phase}: {message}"))
    patch = status.model_dump(by_alias=True, mode="json", exclude_none=True)
    return Decision(status=patch, create_refit=create_refit, events=events)


def _queued_message(job: str, queue: Admission) -> str:
    if queue.admitted:
        by = f" (ClusterQueue '{queue.cluster_queue}')" if queue.cluster_queue else ""
        return f"Job {job} admitted by Kueue{by}"
    where = f"Job {job} waits in Kueue LocalQueue '{queue.queue}'"
    if queue.workload:
        where += f" (Workload {queue.workload})"
    return f"{where}: {queue.message}" if queue.message else where


def _progress(run: ResolvedRun, obs: Observed, previous: dict[str, Any], status: RunStatus, stamp: str,
              now: dt.datetime | None, workers_job: str) -> tuple[str, str, str]:
    """Sets status.lastProgressTime; returns the Progressing condition (status, reason, message).

    A run shows progress when its phase changes, a worker pod becomes Ready, or a trial starts or
    finishes; past spec.progressDeadlineSeconds without any, the condition says what to look at,
    instead of `Preparing 0/24` for half an hour."""
    running = sum(s.running for s in status.studies)
    mark = (status.phase, status.trials, obs.workers.ready, running)
    before = previous.get("lastProgressTime")
    was = (previous.get("phase"), previous.get("trials"), (previous.get("workers") or {}).get("ready", 0),
           sum(s.get("running", 0) for s in previous.get("studies") or []))
    status.last_progress_time = stamp if mark != was or not before else before
    if status.phase not in ("Preparing", "Running"):  # a queued run waits on Kueue, not on its pods
        return "False" if status.phase in ("Succeeded", "Failed", "Suspended") else "True", \
            status.phase if status.phase in ("Pending", "Queued") else "NotTuning", ""
    since = dt.datetime.strptime(status.last_progress_time, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    idle = int(((now or dt.datetime.now(dt.UTC)) - since).total_seconds())
    deadline = run.spec.progress_deadline_seconds
    if idle <= deadline:
        return "True", "Tuning" if status.phase == "Running" else "Preparing", ""
    gpu = run.spec.gpu
    if status.phase == "Preparing" and obs.workers.ready == 0:
        why = (f"no worker pod has become Ready in {idle} s: see `kubectl get pods -l job-name={workers_job}`; "
               f"a Pending pod may find no node with {gpu.count} {gpu.resource_name} free "
               f"(`kubectl describe pod`), a failing one says why in `kubectl logs`" if gpu.count else
               f"no worker pod has become Ready in {idle} s: see `kubectl get pods -l job-name={workers_job}` "
               "and `kubectl describe pod` (image pull, resources, node selector)")
    elif status.phase == "Preparing":
        why = (f"worker pods are Ready but no trial has started in {idle} s: the prep sidecar may be failing or "
               f"slow; see `kubectl logs job/{workers_job} -c prep` and `-c trainer`")
    else:
        why = f"no trial has started or finished in {idle} s: see `kubectl logs job/{workers_job} -c trainer`"
    return "False", "ProgressDeadlineExceeded", f"{why} (spec.progressDeadlineSeconds: {deadline})"


def best_params(params: dict[str, Any]) -> list[BestParam]:
    """A best trial's parameters as name/value pairs (kubectl describe capitalises map keys)."""
    return [BestParam(name=k, value=json.dumps(v)[:256]) for k, v in sorted(params.items())
            if isinstance(v, (int, float, str, bool))]


def status_patch(previous: dict[str, Any] | None, status: dict[str, Any]) -> dict[str, Any]:
    """The merge patch from the stored status to the decided one: only what changed (None deletes).

    A status pass over a run where nothing moved then sends nothing: with 200 runs and a 10 s
    interval that is 20 writes a second the API server and etcd do not have to take."""
    previous = previous or {}
    patch = {k: v for k, v in status.items() if previous.get(k) != v}
    patch.update({k: None for k in previous if k not in status})
    return patch
