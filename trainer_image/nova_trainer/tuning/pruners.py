"""Pruners, and the fold-aware pruning callback.

A trial reports once per boosting round of every fold, at step `fold * numBoostRound + round`:
steps never repeat within a trial, and the same step means the same fold and round in every
trial, so the median pruner compares like with like."""

from __future__ import annotations

import time
from typing import Any

import optuna
import xgboost as xgb

from nova.spec import PrunerSpec
from nova_trainer import stopping
from nova_trainer.tuning.optuna_private import CompletedView, percentile_prune


def make_pruner(spec: PrunerSpec, num_boost_round: int, folds: int) -> optuna.pruners.BasePruner:
    if spec.type == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=spec.startup_trials,
                                           n_warmup_steps=spec.warmup_steps)
    if spec.type == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(1, spec.warmup_steps),
                                              max_resource=num_boost_round * folds, reduction_factor=3)
    if spec.type == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"tuning.pruner.type '{spec.type}' is not one of median, hyperband, none")


class RoundCounter:
    """Boosting rounds a trial has spent, pruned or not (for the pruning benchmark and status)."""

    def __init__(self) -> None:
        self.rounds = 0


class SnapshotPruning:
    """Per-round pruning decisions without a storage read per round.

    `Trial.should_prune()` re-reads the study from the storage every call: ~20 ms on SQLite and a
    round trip on PostgreSQL, often more than a boosting round itself. For the median/percentile
    pruner we run Optuna's own `prune()` against a snapshot of the COMPLETE trials refreshed at
    most every `refresh_seconds`, and this trial's values kept in memory; the decision rule is
    Optuna's, unchanged. Other pruners (Hyperband) go through `trial.should_prune()`."""

    def __init__(self, study: optuna.Study, refresh_seconds: float = 2.0) -> None:
        self._study, self._refresh = study, refresh_seconds
        self._snapshot: CompletedView | None = None
        self._taken = 0.0

    def _completed(self) -> CompletedView:
        now = time.monotonic()
        if self._snapshot is None or now - self._taken > self._refresh:
            trials = self._study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            self._snapshot, self._taken = CompletedView(trials, self._study.direction), now
        return self._snapshot

    def should_prune(self, trial: optuna.Trial, step: int, values: dict[int, float]) -> bool:
        pruner = self._study.pruner
        if isinstance(pruner, optuna.pruners.NopPruner):
            return False
        if isinstance(pruner, optuna.pruners.PercentilePruner):
            return percentile_prune(pruner, self._completed(), step, values)
        return trial.should_prune()


class FoldPruningCallback(xgb.callback.TrainingCallback):
    """Reports every boosting round of every fold at step `fold * numBoostRound + round`, and
    stops the trial (TrialPruned) when the pruner says so.

    Shaped like optuna-integration's XGBoostPruningCallback (same observation key, same report per
    round); it differs in the fold offset and in asking `SnapshotPruning` instead of the storage."""

    def __init__(self, trial: optuna.Trial, observation_key: str, fold: int, rounds_per_fold: int,
                 counter: RoundCounter, pruning: SnapshotPruning, values: dict[int, float]) -> None:
        self._trial, self._key = trial, observation_key
        self._offset = fold * rounds_per_fold
        self._counter, self._pruning, self._values = counter, pruning, values

    def after_iteration(self, model: Any, epoch: int, evals_log: dict) -> bool:
        stopping.check()  # Ctrl-C / SIGTERM: stop here, between rounds, not inside a commit
        self._counter.rounds += 1
        data, _, metric = self._key.partition("-")
        value = float(evals_log[data][metric][-1])
        step = self._offset + epoch
        self._trial.report(value, step)
        self._values[step] = value
        if self._pruning.should_prune(self._trial, step, self._values):
            raise optuna.TrialPruned(
                f"pruned at step {step} (round {epoch} of the fold starting at step {self._offset})")
        return False
