"""Tuning pieces without a database server: search space, samplers, pruners, budget counting."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from nova.spec import ParamSpace, PrunerSpec, SamplerSpec
from nova_trainer.tuning.budget import progress
from nova_trainer.tuning.pruners import SnapshotPruning, make_pruner
from nova_trainer.tuning.samplers import make_sampler
from nova_trainer.tuning.search_space import suggest

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_search_space_respects_types_bounds_and_log():
    space = {"max_depth": ParamSpace(type="int", low=2, high=4),
             "eta": ParamSpace(type="float", low=0.01, high=0.3, log=True),
             "grow_policy": ParamSpace(type="categorical", choices=["depthwise", "lossguide"])}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(30):
        trial = study.ask()
        p = suggest(trial, space)
        assert isinstance(p["max_depth"], int) and 2 <= p["max_depth"] <= 4
        assert 0.01 <= p["eta"] <= 0.3 and p["grow_policy"] in ("depthwise", "lossguide")
        study.tell(trial, 0.0)
    assert study.trials[0].distributions["eta"].log


@pytest.mark.parametrize("kind, cls", [("tpe", optuna.samplers.TPESampler), ("cmaes", optuna.samplers.CmaEsSampler),
                                       ("random", optuna.samplers.RandomSampler)])
def test_samplers(kind, cls):
    assert isinstance(make_sampler(SamplerSpec(type=kind, seed=1), worker=2), cls)


def test_workers_get_different_seeds():
    def first(worker):
        study = optuna.create_study(sampler=make_sampler(SamplerSpec(type="random", seed=1), worker))
        return study.ask().suggest_float("x", 0, 1)

    assert first(0) != first(1) and first(0) == first(0)


def test_pruners():
    assert isinstance(make_pruner(PrunerSpec(type="median"), 100, 3), optuna.pruners.MedianPruner)
    assert isinstance(make_pruner(PrunerSpec(type="hyperband"), 100, 3), optuna.pruners.HyperbandPruner)
    assert isinstance(make_pruner(PrunerSpec(type="none"), 100, 3), optuna.pruners.NopPruner)


def test_snapshot_pruning_decides_as_optuna_does():
    study = optuna.create_study(direction="maximize",
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=3))
    for level in (0.6, 0.7, 0.8):
        t = study.ask()
        for step in range(20):
            t.report(level, step)
        study.tell(t, level)
    snapshot = SnapshotPruning(study)
    for level in (0.5, 0.75, 0.9):
        t = study.ask()
        values = {}
        for step in range(8):
            t.report(level, step)
            values[step] = level
            assert snapshot.should_prune(t, step, values) == t.should_prune(), (level, step)
        study.tell(t, state=TrialState.FAIL)


def test_budget_counts_retries_once_and_queued_trials():
    study = optuna.create_study()
    study.add_trial(optuna.create_trial(state=TrialState.COMPLETE, value=1.0))
    study.add_trial(optuna.create_trial(state=TrialState.PRUNED, intermediate_values={0: 1.0}))
    failed = optuna.create_trial(state=TrialState.FAIL)
    study.add_trial(failed)  # trial 2: its worker died...
    optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)(study, study.trials[2])  # ...re-queued
    study.add_trial(optuna.create_trial(state=TrialState.FAIL))  # trial 4: a real failure, counted
    p = progress(study)
    assert (p.complete, p.pruned, p.failed, p.waiting) == (1, 1, 1, 1)
    assert p.finished == 3 and p.committed == 4 and p.best_value == 1.0
