"""Creating and loading the per-symbol studies (the operator creates them first, so workers never
race to create; `load_if_exists` makes either order safe)."""

from __future__ import annotations

import warnings

import optuna

from nova.spec import ResolvedRun
from nova.study_identity import FINGERPRINT_ATTR, check, fingerprint
from nova_trainer.tuning.pruners import make_pruner
from nova_trainer.tuning.samplers import make_sampler


def open_study(run: ResolvedRun, symbol: str, storage: optuna.storages.BaseStorage) -> optuna.Study:
    spec = run.spec
    study = optuna.create_study(
        storage=storage, study_name=run.study_name(symbol), load_if_exists=True,
        direction=spec.tuning.resolved_direction, sampler=make_sampler(spec.tuning.sampler),
        pruner=make_pruner(spec.tuning.pruner, spec.model.num_boost_round, spec.validation.walk_forward.folds))
    check(run, study.study_name, study.user_attrs.get(FINGERPRINT_ATTR))  # never merge another spec's trials
    if FINGERPRINT_ATTR not in study.user_attrs:
        study.set_user_attr(FINGERPRINT_ATTR, fingerprint(run))
    if "budget" not in study.user_attrs:
        study.set_user_attr("budget", spec.tuning.trials)
        study.set_user_attr("metric", spec.tuning.metric)
        study.set_user_attr("symbol", symbol)
    if study.metric_names is None:  # the dashboard's name for the objective, else "Objective 0"
        with warnings.catch_warnings():  # experimental in Optuna; a name is all we ask of it
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([spec.tuning.metric])
    return study
