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
    assert isinstance(make_sampler(SamplerSpec(type=kind, seed=None)), cls)
    seeded = make_sampler(SamplerSpec(type=kind, seed=1))
    study = optuna.create_study(sampler=seeded)
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    assert isinstance(seeded._for(study, study.trials[0]), cls)


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


def test_a_trial_whose_end_the_database_lost_is_failed_and_retried_not_left_running(tmp_path, monkeypatch):
    """The database restarts while a trial runs: its `tell` fails. Left RUNNING (with no heartbeat
    to go stale, the end of the run would wait on it forever); the worker fails it and queues its
    retry once the database is back, so the budget is still met with no trial lost."""
    import sqlalchemy.exc

    from nova_trainer.tuning import worker

    monkeypatch.setattr(worker.time, "sleep", lambda s: None)
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'o.db'}", direction="maximize")
    real = study._storage.set_trial_state_values
    calls = {"n": 0}

    def restart_during_first_tell(trial_id, state, values=None):
        calls["n"] += 1
        if calls["n"] == 1:
            raise sqlalchemy.exc.OperationalError("UPDATE trials", {}, Exception("server closed the connection"))
        return real(trial_id, state, values)

    monkeypatch.setattr(study._storage, "set_trial_state_values", restart_during_first_tell)
    state = worker._retrying(lambda: worker._one_trial(study, lambda t: t.suggest_float("x", 0, 1)))
    assert state == TrialState.COMPLETE
    first, retry = study.get_trials(deepcopy=False)
    assert first.state == TrialState.FAIL and retry.state == TrialState.COMPLETE
    assert retry.system_attrs["failed_trial"] == first.number and retry.params == first.params
    assert progress(study).committed == 1  # the lost trial costs no budget
    assert worker.fail_orphan(study, first._trial_id) is False  # finished: left alone


def test_a_trial_that_never_recorded_a_heartbeat_goes_stale_after_the_grace_period(tmp_path):
    """A worker killed between creating its trial and its first heartbeat: Optuna's RDBStorage alone
    would leave that trial RUNNING forever (it only judges trials with a heartbeat row)."""
    from nova_trainer.tuning.rdb_storage import HeartbeatRDBStorage

    now = [0.0]
    storage = HeartbeatRDBStorage(f"sqlite:///{tmp_path / 'o.db'}", heartbeat_interval=1, grace_period=10,
                                  clock=lambda: now[0],
                                  heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(1))
    study = optuna.create_study(storage=storage, study_name="s")
    orphan = study.ask()  # RUNNING, and no heartbeat thread ever started for it
    live = study.ask()
    storage.record_heartbeat(live._trial_id)
    assert storage._get_stale_trial_ids(study._study_id) == []  # first seen now
    now[0] = 9.0
    assert storage._get_stale_trial_ids(study._study_id) == []  # within the grace period
    now[0] = 11.0
    optuna.storages.fail_stale_trials(study)
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    assert states[orphan.number] == TrialState.FAIL
    assert states[live.number] == TrialState.RUNNING  # it beats: judged by Optuna's own rule
    retry = [t for t in study.get_trials(deepcopy=False) if t.system_attrs.get("failed_trial") == orphan.number]
    assert len(retry) == 1 and retry[0].state == TrialState.WAITING


def _seeded_run(name: str = "seeds"):
    from nova.manifest import parse_run
    from nova.spec import resolve
    from tests.conftest import small_run_manifest

    return resolve(parse_run(small_run_manifest(name=name, trials=8)))


def _draw(study: optuna.Study, space) -> tuple:
    trial = study.ask()
    params = suggest(trial, space)
    study.tell(trial, 0.5)
    return tuple(sorted(params.items()))


def test_two_runs_at_once_and_a_resume_never_draw_the_same_parameters(tmp_path):
    """Issue 14, bug 4: the seed was spec seed + worker index, so worker 0 of two processes (two runs
    of one study at once, or a run and its resume) drew the same startup trials."""
    from nova_trainer.tuning.storage import open_storage
    from nova_trainer.tuning.study import open_study

    run = _seeded_run()
    space = run.spec.tuning.search_space
    storage = open_storage(f"sqlite:///{tmp_path / 'o.db'}", 1, 4)
    first, second = open_study(run, "AAA", storage), open_study(run, "AAA", storage)  # two processes
    draws = []
    for _ in range(2):
        draws += [_draw(first, space), _draw(second, space)]
    resumed = open_study(run, "AAA", storage)  # a later `nova run` of the same run
    draws += [_draw(resumed, space) for _ in range(4)]
    assert len(draws) == 8 and len(set(draws)) == 8, f"{8 - len(set(draws))} repeated parameter sets"


def test_a_run_alone_is_reproducible_from_its_seed(tmp_path):
    from nova_trainer.tuning.storage import open_storage
    from nova_trainer.tuning.study import open_study

    run = _seeded_run()
    space = run.spec.tuning.search_space

    def sequence(db: str) -> list[tuple]:
        study = open_study(run, "AAA", open_storage(f"sqlite:///{tmp_path / db}", 1, 4))
        return [_draw(study, space) for _ in range(7)]  # past TPE's 5 startup trials

    assert sequence("a.db") == sequence("b.db")


def test_studies_name_their_metric_for_the_dashboard(tmp_path):
    from nova_trainer.tuning.storage import open_storage
    from nova_trainer.tuning.study import open_study

    run = _seeded_run()
    open_study(run, "AAA", open_storage(f"sqlite:///{tmp_path / 'o.db'}", 1, 4))
    study = optuna.load_study(study_name=run.study_name("AAA"), storage=f"sqlite:///{tmp_path / 'o.db'}")
    assert study.metric_names == ["auc"]


def test_ctrl_c_with_two_workers_requeues_each_interrupted_trial_once(tmp_path, monkeypatch):
    """Issue 14, bug 3: both workers hear one Ctrl-C; each re-queued every interrupted trial it saw,
    so 2 interrupted trials came back as 4 WAITING ones. Two real workers (threads) train on one
    SQLite study; the re-queue of each is held until both reached it, the unlucky interleaving."""
    import threading

    from nova_trainer import stopping
    from nova_trainer.dataset import load_symbol_data
    from nova_trainer.device import resolve_device
    from nova_trainer.tuning.storage import open_storage
    from nova_trainer.tuning.worker import tune_symbol

    run = _seeded_run("ctrlc")
    run.spec.model.num_boost_round = 100_000  # trials still running when Ctrl-C comes
    run.spec.model.early_stopping_rounds = None
    run.spec.tuning.pruner.type = "none"
    data = load_symbol_data(run.spec, "AAA")
    url = f"sqlite:///{tmp_path / 'o.db'}"
    storage = open_storage(url, 1, 60)
    device = resolve_device("cpu")

    barrier = threading.Barrier(2)
    real = optuna.storages.RetryHeartbeatStaleTrialCallback.__call__

    def held(self, study, trial):
        try:
            barrier.wait(timeout=10)
        except threading.BrokenBarrierError:
            pass
        return real(self, study, trial)

    monkeypatch.setattr(optuna.storages.RetryHeartbeatStaleTrialCallback, "__call__", held)
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            tune_symbol(run, data, storage, index, device)
        except KeyboardInterrupt:
            pass
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    try:
        study = optuna.load_study(study_name=run.study_name("AAA"), storage=url)
        for _ in range(600):
            if sum(t.state == TrialState.RUNNING for t in study.get_trials(deepcopy=False)) == 2:
                break
            threading.Event().wait(0.1)
        stopping._requested.set()  # what the signal handler does on Ctrl-C
        for t in threads:
            t.join(timeout=120)
    finally:
        stopping._requested.clear()
    assert not errors, errors
    trials = study.get_trials(deepcopy=False)
    interrupted = [t for t in trials if t.state == TrialState.FAIL and t.user_attrs.get("interrupted")]
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    assert len(interrupted) == 2
    assert len(waiting) == 2, f"{len(waiting)} WAITING trials for {len(interrupted)} interrupted ones"
    assert sorted(t.system_attrs["failed_trial"] for t in waiting) == sorted(t.number for t in interrupted)
