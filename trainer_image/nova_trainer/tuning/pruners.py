"""Pruners, and the fold-aware pruning callback.

A trial reports once per boosting round of every fold, at step `fold * numBoostRound + round`:
steps never repeat within a trial, and the same step means the same fold and round in every
trial, so the median pruner compares like with like."""

from __future__ import annotations

from typing import Any

import optuna
from optuna_integration.xgboost import XGBoostPruningCallback

from nova.spec import PrunerSpec


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


class FoldPruningCallback(XGBoostPruningCallback):
    """optuna-integration's callback, reporting at a fold-offset step and counting rounds."""

    def __init__(self, trial: optuna.Trial, observation_key: str, fold: int, rounds_per_fold: int,
                 counter: RoundCounter) -> None:
        super().__init__(trial, observation_key)
        self._offset = fold * rounds_per_fold
        self._counter = counter

    def after_iteration(self, model: Any, epoch: int, evals_log: dict) -> bool:
        self._counter.rounds += 1
        return super().after_iteration(model, self._offset + epoch, evals_log)
