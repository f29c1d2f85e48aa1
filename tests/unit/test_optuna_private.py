"""Nova's few uses of Optuna's private API (nova_trainer.tuning.optuna_private) still mean what they
did in the Optuna versions they were checked against. On a new Optuna this fails first: re-check
the module, then add the version to CHECKED_OPTUNA (and widen pyproject's pin)."""

from __future__ import annotations

import warnings

import optuna
import pytest

from nova_trainer.tuning import optuna_private as private


def test_installed_optuna_is_a_checked_version() -> None:
    major_minor = ".".join(optuna.__version__.split(".")[:2])
    assert major_minor in private.CHECKED_OPTUNA, (
        f"optuna {optuna.__version__} is not one nova_trainer/tuning/optuna_private.py was checked against "
        f"({', '.join(private.CHECKED_OPTUNA)})")


def test_the_stale_trial_hook_exists_where_nova_overrides_it() -> None:
    for cls in (optuna.storages.RDBStorage, private.BaseHeartbeat):
        assert callable(getattr(cls, private.STALE_TRIAL_IDS_HOOK, None)), cls
    assert issubclass(optuna.storages.RDBStorage, private.BaseHeartbeat)
    assert {"TrialModel", "TrialHeartbeatModel"} <= set(vars(private.rdb_models))


def test_trial_id_and_storage_of_a_real_study(tmp_path) -> None:
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'o.db'}")
    study = optuna.create_study(storage=storage)
    trial = study.ask()
    # Optuna wraps an RDBStorage in its cache; the wrapper is a BaseStorage with the same trials
    assert isinstance(private.study_storage(study), optuna.storages.BaseStorage)
    assert private.study_storage(study).get_trial(private.trial_storage_id(trial)).number == trial.number
    assert storage.get_trial(private.trial_storage_id(trial)).number == trial.number
    frozen = study.get_trials(deepcopy=False)[0]
    assert private.trial_storage_id(frozen) == private.trial_storage_id(trial)
    with private.scoped_session(storage.scoped_session) as session:
        assert session.query(private.rdb_models.TrialModel).count() == 1


def test_telling_a_finished_trial_raises_the_text_nova_matches() -> None:
    study = optuna.create_study()
    trial = study.ask()
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    with warnings.catch_warnings(), pytest.raises(ValueError) as err:
        warnings.simplefilter("ignore")
        study.tell(trial, 1.0)
    assert private.is_tell_of_finished_trial(err.value)
    assert not private.is_tell_of_finished_trial(ValueError("something else"))


def test_percentile_prune_on_a_snapshot_matches_optunas_own_decision() -> None:
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=2))
    for values in ([0.6, 0.7], [0.65, 0.72], [0.62, 0.71]):
        t = study.ask()
        for step, v in enumerate(values):
            t.report(v, step)
        study.tell(t, values[-1])
    completed = private.CompletedView(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)), study.direction)
    for low_or_high in (0.1, 0.9):
        t = study.ask()
        t.report(low_or_high, 1)
        assert private.percentile_prune(study.pruner, completed, 1, {1: low_or_high}) == t.should_prune()
        study.tell(t, state=optuna.trial.TrialState.PRUNED)
