"""Warm start: a new run's studies are seeded with the previous run's best trials, fitted to the new
search space; the rule (nova.warm_start) is checked alone, then through the operator's and the local
runner's real Optuna calls on SQLite."""

from __future__ import annotations

import optuna
import pytest

from nova.spec import ParamSpace, ResolvedRun, TrainingRunSpec
from nova.warm_start import WARM_START_ATTR, fit, plan
from nova_operator.studies import Studies
from nova_trainer.tuning.search_space import suggest
from nova_trainer.tuning.study import open_study
from nova_trainer.tuning.warm_start import seed

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = {
    "eta": ParamSpace(type="float", low=0.05, high=0.2, log=True),
    "max_depth": ParamSpace(type="int", low=3, high=6),
    "subsample": ParamSpace(type="float", low=0.5, high=1.0, step=0.1),
    "grow_policy": ParamSpace(type="categorical", choices=["depthwise"]),
}


def test_fit_clips_numbers_onto_the_new_grid_and_drops_what_cannot_fit():
    fitted, notes = fit({"eta": 0.3, "max_depth": 9, "subsample": 0.73, "grow_policy": "lossguide",
                         "gamma": 1.0}, SPACE)
    assert fitted == {"eta": 0.2, "max_depth": 6, "subsample": pytest.approx(0.7)}
    assert isinstance(fitted["max_depth"], int)
    text = "\n".join(notes)
    assert "eta=0.3 clipped to 0.2" in text and "max_depth=9 clipped to 6" in text
    assert "grow_policy='lossguide' dropped: not among the new choices" in text
    assert "gamma=1.0 dropped: not in the new search space" in text
    assert fit({"eta": 0.1, "max_depth": 4, "grow_policy": "depthwise"}, SPACE) == (
        {"eta": 0.1, "max_depth": 4, "grow_policy": "depthwise"}, [])


def test_fit_keeps_values_of_a_step_grid_inside_the_range():
    space = {"x": ParamSpace(type="float", low=0.0, high=1.0, step=0.3)}  # grid 0, .3, .6, .9
    assert fit({"x": 0.99}, space)[0]["x"] == pytest.approx(0.9)
    assert fit({"x": True}, space)[0] == {}  # a boolean is not a number here


class T:  # a FrozenTrial by duck typing, as the contract reads trials
    def __init__(self, number, value, state="COMPLETE", **params):
        self.number, self.value, self.params, self.system_attrs = number, value, params, {}
        self.state = type("S", (), {"name": state})()


def test_plan_takes_the_best_complete_trials_never_more_than_the_budget():
    trials = [T(0, 0.5, eta=0.1), T(1, 0.9, eta=0.11), T(2, 0.99, "PRUNED", eta=0.12), T(3, 0.7, eta=0.13),
              T(4, None, "FAIL", eta=0.14), T(5, 0.8, eta=0.15)]
    best = plan(trials, True, SPACE, top_k=3, budget=100)
    assert best.seeds == [{"eta": 0.11}, {"eta": 0.15}, {"eta": 0.13}] and best.source_trials == [1, 5, 3]
    assert plan(trials, False, SPACE, top_k=3, budget=100).source_trials == [0, 3, 5]  # minimize
    assert len(plan(trials, True, SPACE, top_k=10, budget=2).seeds) == 2  # a queued trial counts in the budget


def test_plan_enqueues_two_trials_that_became_the_same_once():
    same = plan([T(0, 0.9, eta=0.5), T(1, 0.8, eta=0.9), T(2, 0.7, eta=0.1)], True, SPACE, top_k=2, budget=10)
    assert same.seeds == [{"eta": 0.2}, {"eta": 0.1}] and same.source_trials == [0, 2]


def _run(name: str, **tuning) -> ResolvedRun:
    body = {"data": {"symbols": ["AAA", "BBB"], "source": "synthetic"}, "tuning": {"trials": 8, **tuning}}
    return ResolvedRun(name=name, namespace="ns", spec=TrainingRunSpec.model_validate(body))


def _finish_old_run(storage, old: ResolvedRun) -> None:
    """Eight finished trials per symbol, scored by eta (so the best are known)."""
    for symbol in old.spec.data.symbols:
        study = optuna.load_study(study_name=old.study_name(symbol), storage=storage)
        for i in range(8):
            trial = study.ask()
            params = suggest(trial, old.spec.tuning.search_space)
            study.tell(trial, params["eta"] if i != 3 else None,
                       state=optuna.trial.TrialState.COMPLETE if i != 3 else optuna.trial.TrialState.PRUNED)


@pytest.fixture
def storage(tmp_path):
    return optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'o.db'}")


def test_operator_enqueues_the_previous_runs_best_trials_once(storage, caplog):
    old = _run("old")
    Studies().create_studies(old, storage)
    _finish_old_run(storage, old)
    space = {"eta": {"type": "float", "low": 0.02, "high": 0.3, "log": True},
             "max_depth": {"type": "int", "low": 2, "high": 4}}
    new = _run("new", warmStartFrom="old", warmStart={"topK": 3}, searchSpace=space)
    with caplog.at_level("INFO", logger="nova_operator.studies"):
        assert len(Studies().create_studies(new, storage)) == 2
    Studies().create_studies(new, storage)  # a second pass (an operator restart) adds nothing
    for symbol in ("AAA", "BBB"):
        old_study = optuna.load_study(study_name=old.study_name(symbol), storage=storage)
        top = sorted((t for t in old_study.trials if t.state.name == "COMPLETE"), key=lambda t: -t.value)[:3]
        study = optuna.load_study(study_name=new.study_name(symbol), storage=storage)
        waiting = [t for t in study.trials if t.state == optuna.trial.TrialState.WAITING]
        assert len(waiting) == 3
        for queued, source in zip(waiting, top, strict=True):
            assert queued.system_attrs["fixed_params"]["eta"] == pytest.approx(max(source.params["eta"], .02))
            assert 2 <= queued.system_attrs["fixed_params"]["max_depth"] <= 4
            assert set(queued.system_attrs["fixed_params"]) == {"eta", "max_depth"}
        record = study.user_attrs[WARM_START_ATTR]
        assert record["from"] == f"ns.old.{symbol}" and record["enqueued"] == 3
        assert record["sourceTrials"] == [t.number for t in top]
        assert any("dropped: not in the new search space" in n for n in record["notes"])  # subsample, ...
        # the workers' sampler starts with them: the first trials asked are the seeds
        asked = [study.ask() for _ in range(3)]
        assert [suggest(t, new.spec.tuning.search_space) for t in asked] == [
            t.system_attrs["fixed_params"] for t in waiting]
    assert "warm start from ns.old.AAA: 3 trial(s) enqueued" in caplog.text


def test_operator_notes_a_missing_previous_study(storage):
    new = _run("new", warmStartFrom="never-ran")
    Studies().create_studies(new, storage)
    study = optuna.load_study(study_name="ns.new.AAA", storage=storage)
    assert study.trials == []
    assert study.user_attrs[WARM_START_ATTR]["notes"] == [
        "no study 'ns.never-ran.AAA' in this storage: nothing to warm-start from"]


def test_a_study_a_worker_made_first_is_still_seeded(storage):
    old = _run("old")
    Studies().create_studies(old, storage)
    _finish_old_run(storage, old)
    new = _run("new", warmStartFrom="old", warmStart={"topK": 2})
    open_study(new, "AAA", storage)  # the worker got there before the operator
    assert Studies().create_studies(new, storage) == ["ns.new.BBB"]
    study = optuna.load_study(study_name="ns.new.AAA", storage=storage)
    assert [t.state.name for t in study.trials] == ["WAITING", "WAITING"]


def test_local_runner_seeds_from_a_previous_local_run(tmp_path):
    old_storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'old.db'}")
    old = _run("old")
    for symbol in old.spec.data.symbols:
        open_study(old, symbol, old_storage)
    _finish_old_run(old_storage, old)
    new_storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'new.db'}")
    new = _run("new", warmStart={"topK": 4})
    study = open_study(new, "AAA", new_storage)
    assert len(seed(new, study, "AAA", old_storage, old).seeds) == 4
    assert seed(new, study, "AAA", old_storage, old).seeds == []  # once
    assert [t.state.name for t in study.trials] == ["WAITING"] * 4
