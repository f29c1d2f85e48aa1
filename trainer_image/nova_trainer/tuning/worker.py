"""The worker loop: for each symbol, join its study and run trials until the study holds its budget.

Workers are interchangeable and share nothing but the storage. Before each trial a worker re-counts
the study in the storage (see `budget.py`). When the budget is committed it still waits for RUNNING
trials to finish: if their worker died, the heartbeat marks them stale and this worker runs the
retry. Transient database errors (a restart) are retried with backoff (tenacity); a trial whose end one of
them lost is failed and retried by the worker that ran it (`fail_orphan`), or else by the heartbeat
check like a dead worker's."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial

import optuna
import tenacity

from nova.budget import retried_numbers
from nova.errors import NovaError
from nova.spec import ResolvedRun
from nova.storage_errors import describe, is_transient_chain
from nova_trainer import stopping
from nova_trainer.dataset import SymbolData
from nova_trainer.device import DeviceChoice, init_rmm, resolve_device
from nova_trainer.tuning.budget import Progress, progress
from nova_trainer.tuning.objective import Objective
from nova_trainer.tuning.optuna_private import is_tell_of_finished_trial, study_storage, trial_storage_id
from nova_trainer.tuning.study import open_study

log = logging.getLogger(__name__)

MAX_CONSECUTIVE_FAILURES = 5
MAX_OUTAGE_SECONDS = 300


@dataclass
class SymbolOutcome:
    symbol: str
    progress: Progress | None
    trials_run_here: int
    error: str | None = None


class TooManyFailures(NovaError):
    pass


def tune_symbol(run: ResolvedRun, data: SymbolData, storage: optuna.storages.BaseStorage, worker: int,
                device: DeviceChoice, on_trial: Callable[[Progress], None] | None = None,
                deadline: float | None = None) -> SymbolOutcome:
    spec = run.spec
    budget = spec.tuning.trials
    study = _retrying(lambda: open_study(run, data.symbol, storage))
    objective = Objective(data, spec, device)
    ran, consecutive_failures = 0, 0
    while True:
        stopping.check()
        state = _retrying(lambda: progress(study))
        if on_trial:
            on_trial(state)
        if deadline is not None and time.monotonic() > deadline:
            log.info("%s: tuning.timeoutSeconds reached; no new trials", data.symbol)
            break
        if state.committed >= budget and state.waiting == 0:
            if state.running == 0:
                break
            # Someone's trial is running; if its worker died the heartbeat will fail it and
            # re-queue it as WAITING, which the next optimize() call here picks up.
            stopping.wait(min(spec.tuning.heartbeat_seconds, 2))
            _retrying(lambda: optuna.storages.fail_stale_trials(study))
            continue
        started: list[int] = []  # the trial this call runs, once Optuna has made it
        try:
            trial_state = _retrying(partial(_one_trial, study, objective, started))
        except KeyboardInterrupt:
            _retrying(partial(requeue_interrupted, study, started))
            raise
        ran += 1
        consecutive_failures = consecutive_failures + 1 if trial_state == optuna.trial.TrialState.FAIL else 0
        if consecutive_failures >= MAX_CONSECUTIVE_FAILURES:
            last = study.get_trials(deepcopy=False)[-1]
            raise TooManyFailures(f"{data.symbol}: {consecutive_failures} trials failed in a row; "
                                  f"last error: {last.user_attrs.get('error', 'see worker log')}")
    return SymbolOutcome(data.symbol, _retrying(lambda: progress(study)), ran)


def _one_trial(study: optuna.Study, objective: Callable[[optuna.Trial], float],
               started: list[int] | None = None) -> optuna.trial.TrialState:
    """Run one trial; `started` receives its id as soon as Optuna has made it."""
    started = [] if started is None else started

    def recorded(trial: optuna.Trial) -> float:
        started.append(trial_storage_id(trial))
        try:
            return objective(trial)
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)
            raise
        except NovaError as exc:
            trial.set_user_attr("error", str(exc))
            raise
        except Exception as exc:  # recorded on the trial, which Optuna marks FAIL
            trial.set_user_attr("error", f"{type(exc).__name__}: {str(exc)[:300]}")
            raise

    try:
        study.optimize(recorded, n_trials=1, catch=(Exception,), gc_after_trial=False)
    except ValueError as exc:
        # Another worker found this trial's heartbeat stale (this process was starved of CPU for
        # longer than graceSeconds), failed it and queued its retry: nothing is lost, carry on.
        if not is_tell_of_finished_trial(exc):
            raise
        log.warning("%s: a trial running here was failed as stale by another worker (%s); its retry is "
                    "queued", study.study_name, exc)
        return optuna.trial.TrialState.FAIL
    except Exception as exc:
        # The database went away while this trial ran, so Optuna could not record its end (and
        # maybe not its first heartbeat). The storage's stale-trial check would fail it after
        # graceSeconds (rdb_storage.py covers the beatless case); this worker knows it at once, so
        # once the database is back it fails the trial and queues its retry itself.
        if started and is_transient_chain(exc):
            if _retrying(lambda: fail_orphan(study, started[-1])):
                log.warning("%s: trial %d lost its result to a storage error; failed and queued for a retry",
                            study.study_name, started[-1])
        raise
    trials = study.get_trials(deepcopy=False)
    return trials[-1].state if trials else optuna.trial.TrialState.FAIL


def fail_orphan(study: optuna.Study, trial_id: int) -> bool:
    """Fail a trial this process ran if the storage still has it RUNNING, and queue its retry (the
    stale-trial path: the FAIL then does not count against the budget). True if it did."""
    storage = study_storage(study)
    if storage.get_trial(trial_id).state != optuna.trial.TrialState.RUNNING:
        return False
    try:
        if not storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL):
            return False
    except optuna.exceptions.UpdateFinishedTrialError:  # it finished meanwhile
        return False
    optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)(study, storage.get_trial(trial_id))
    return True


def requeue_interrupted(study: optuna.Study, trial_ids: list[int]) -> int:
    """Re-queue the trials that Ctrl-C or SIGTERM cut short in this process, so they do not eat the
    budget. Only this process's own: every worker of a run hears the same Ctrl-C, and when each
    re-queued every interrupted trial it saw, one interrupted trial came back once per worker."""
    storage = study_storage(study)
    retried = retried_numbers(study.get_trials(deepcopy=False))
    requeue = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)
    count = 0
    for trial_id in trial_ids:
        t = storage.get_trial(trial_id)
        if t.state == optuna.trial.TrialState.FAIL and t.user_attrs.get("interrupted") and t.number not in retried:
            requeue(study, t)
            count += 1
    return count


def _log_retry(state: tenacity.RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    log.warning("storage error (%s); retrying in %.1fs", describe(exc) if exc else "?",
                state.next_action.sleep if state.next_action else 0.0)


# a database restart: retried with backoff for up to MAX_OUTAGE_SECONDS, then the error stands
_RETRY_OUTAGE = tenacity.Retrying(
    retry=tenacity.retry_if_exception(is_transient_chain), wait=tenacity.wait_exponential(multiplier=0.5, max=15),
    stop=tenacity.stop_after_delay(MAX_OUTAGE_SECONDS), before_sleep=_log_retry, reraise=True)


def _retrying[T](action: Callable[[], T]) -> T:
    """Run a storage action, retrying transient database errors with backoff for a while."""
    return _RETRY_OUTAGE.copy()(action)


def run_worker(run: ResolvedRun, storage: optuna.storages.BaseStorage, worker: int,
               symbols: Iterable[tuple[str, SymbolData | Exception]],
               on_trial: Callable[[str, Progress], None] | None = None) -> list[SymbolOutcome]:
    """Tune each symbol as its data arrives; a symbol whose data failed is reported, not fatal."""
    spec = run.spec
    device = resolve_device(spec.model.device)
    init_rmm(spec.gpu.rmm.enabled, device.device, spec.gpu.rmm.initial_pool_size, spec.gpu.rmm.maximum_pool_size)
    deadline = time.monotonic() + spec.tuning.timeout_seconds if spec.tuning.timeout_seconds else None
    outcomes = []
    for symbol, data in symbols:
        if isinstance(data, Exception):
            log.error("%s: skipped: %s", symbol, data)
            outcomes.append(SymbolOutcome(symbol, None, 0, error=str(data)))
            continue
        callback = (lambda p, s=symbol: on_trial(s, p)) if on_trial else None
        outcomes.append(tune_symbol(run, data, storage, worker, device, callback, deadline))
    return outcomes
