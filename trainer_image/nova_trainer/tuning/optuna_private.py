"""Every reach into Optuna's private API, in one place, checked against the versions below
(tests/unit/test_optuna_private.py fails on any other, so an upgrade is re-checked here first).

Why each is needed:
- `BaseHeartbeat` and the `_get_stale_trial_ids` hook: Optuna's stale-trial machinery
  (`fail_stale_trials`, RetryHeartbeatStaleTrialCallback) is public, but a storage can only take
  part in it by implementing these; Nova's RDB and gRPC storages do (rdb_storage, grpc_storage).
- RDB models and scoped sessions: one query for RUNNING trials with no heartbeat row (rdb_storage).
- A Trial's id and a Study's storage: to fail a trial whose end a database outage lost (worker).
- The error text of telling a finished trial: the only way to know that another worker already
  failed this process's trial as stale (worker).
- A study-shaped snapshot for PercentilePruner.prune: pruning decisions without a storage read per
  boosting round (pruners)."""

from __future__ import annotations

from collections.abc import Container
from typing import Any

import optuna
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages._rdb import models as rdb_models
from optuna.storages._rdb.storage import _create_scoped_session as scoped_session

CHECKED_OPTUNA = ("5.0",)  # major.minor versions this module was checked against
STALE_TRIAL_IDS_HOOK = "_get_stale_trial_ids"  # overridden by Nova's storages
TELL_FINISHED_TRIAL = "Cannot tell a"  # ValueError raised by Study.tell on a finished trial

__all__ = ["BaseHeartbeat", "CHECKED_OPTUNA", "CompletedView", "STALE_TRIAL_IDS_HOOK", "is_tell_of_finished_trial",
           "rdb_models", "scoped_session", "study_storage", "trial_storage_id"]


def trial_storage_id(trial: optuna.Trial | optuna.trial.FrozenTrial) -> int:
    """The storage's id of a trial (neither Trial nor FrozenTrial has a public accessor)."""
    return trial._trial_id


def study_storage(study: optuna.Study) -> optuna.storages.BaseStorage:
    return study._storage


def is_tell_of_finished_trial(exc: BaseException) -> bool:
    """Study.optimize raised because the trial was already finished (failed as stale elsewhere)."""
    return isinstance(exc, ValueError) and str(exc).startswith(TELL_FINISHED_TRIAL)


class CompletedView:
    """The part of a Study that Optuna's percentile/median pruner reads (`get_trials`,
    `direction`), from a snapshot of its COMPLETE trials."""

    def __init__(self, trials: list[optuna.trial.FrozenTrial], direction: optuna.study.StudyDirection) -> None:
        self._trials, self.direction = trials, direction

    def get_trials(self, deepcopy: bool = False,
                   states: Container[optuna.trial.TrialState] | None = None) -> list[optuna.trial.FrozenTrial]:
        return self._trials if states is None else [t for t in self._trials if t.state in states]


def percentile_prune(pruner: optuna.pruners.PercentilePruner, completed: CompletedView, step: int,
                     values: dict[int, float]) -> bool:
    """Optuna's own pruning rule, on the snapshot and this trial's in-memory values: `prune` reads
    only `last_step` and `intermediate_values` of the trial."""
    from types import SimpleNamespace

    trial: Any = SimpleNamespace(last_step=step, intermediate_values=values)
    return pruner.prune(completed, trial)  # type: ignore[arg-type]  # duck-typed FrozenTrial, see above
