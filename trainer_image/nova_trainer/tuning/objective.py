"""One trial: suggest parameters, evaluate them walk-forward, report every round to the pruner."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna

from nova.spec import TrainingRunSpec
from nova_trainer.dataset import SymbolData
from nova_trainer.device import DeviceChoice
from nova_trainer.evaluation.oos import STUDY_KEY, TRIAL_KEY
from nova_trainer.train import evaluate, observation
from nova_trainer.tuning.pruners import FoldPruningCallback, RoundCounter, SnapshotPruning
from nova_trainer.tuning.search_space import suggest


class Objective:
    def __init__(self, data: SymbolData, spec: TrainingRunSpec, device: DeviceChoice) -> None:
        self.data, self.spec, self.device = data, spec, device
        self._pruning: SnapshotPruning | None = None
        self._bars_stored: str | None = None

    def pruning(self, study: optuna.Study) -> SnapshotPruning:
        """One snapshot per worker and study, shared by its trials (refreshed by time)."""
        if self._pruning is None:
            self._pruning = SnapshotPruning(study)
        return self._pruning

    def _store_bars(self, study: optuna.Study, digest: str, attr: Callable[[], dict[str, Any]]) -> None:
        """The test bars' forward returns and dates, once per study (every worker scores the same)."""
        if self._bars_stored == digest:
            return
        stored = study.user_attrs.get(STUDY_KEY)
        if not stored or stored.get("digest") != digest:
            study.set_user_attr(STUDY_KEY, attr())
        self._bars_stored = digest

    def __call__(self, trial: optuna.Trial) -> float:
        params = suggest(trial, self.spec.tuning.search_space)
        counter, values = RoundCounter(), dict[int, float]()
        key, _ = observation(self.spec.tuning.metric)
        rounds_per_fold = self.spec.model.num_boost_round
        pruning = self.pruning(trial.study)

        def callbacks(fold: int):
            return [FoldPruningCallback(trial, key, fold, rounds_per_fold, counter, pruning, values)]

        try:
            result = evaluate(self.data, self.spec, params, self.device, fold_callbacks=callbacks)
        finally:
            trial.set_user_attr("rounds", counter.rounds)
        trial.set_user_attr("metrics", result.summary)
        trial.set_user_attr("fold_best_iterations", [f.best_iteration for f in result.folds])
        trial.set_user_attr("device", result.device)
        if result.oos is not None:
            self._store_bars(trial.study, result.oos.digest(), result.oos.study_attr)
            trial.set_user_attr(TRIAL_KEY, result.oos.trial_attr())
        return result.value(self.spec.tuning.metric)
