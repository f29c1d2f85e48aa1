"""Workers through the chart's Optuna gRPC storage proxy (grpc:// URLs): the proxy script runs as its
pod runs it, in front of SQLite or the real PostgreSQL, and the workers are real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from nova.config import load_resolved
from nova_trainer.tuning.budget import progress
from nova_trainer.tuning.grpc_storage import HEARTBEAT_ATTR, GrpcHeartbeatStorage
from nova_trainer.tuning.storage import open_storage
from tests.support.optuna_proxy import free_port, start_proxy, stop

pytestmark = [pytest.mark.timeout(600)]


@pytest.fixture
def sqlite_proxy(tmp_path):
    port = free_port()
    proc = start_proxy(f"sqlite:///{tmp_path / 'optuna.db'}", port)
    yield port
    stop(proc)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning",
                            "ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_a_trial_is_stale_only_after_its_heartbeat_stood_still_for_the_grace_period(sqlite_proxy):
    clock = Clock()
    watcher = GrpcHeartbeatStorage("127.0.0.1", sqlite_proxy, heartbeat_seconds=1, grace_seconds=10, clock=clock)
    runner = open_storage(f"grpc://127.0.0.1:{sqlite_proxy}", 1, 10)
    study = optuna.create_study(study_name="ns.run.AAA", storage=runner)
    trial = study.ask()
    runner.record_heartbeat(trial._trial_id)
    assert watcher._get_stale_trial_ids(study._study_id) == []  # first sight starts the clock
    clock.now = 9
    assert watcher._get_stale_trial_ids(study._study_id) == []
    runner.record_heartbeat(trial._trial_id)  # alive: the beat changed
    clock.now = 15
    assert watcher._get_stale_trial_ids(study._study_id) == []
    clock.now = 26  # 11 s without a new beat
    assert watcher._get_stale_trial_ids(study._study_id) == [trial._trial_id]
    assert HEARTBEAT_ATTR in runner.get_trial(trial._trial_id).system_attrs
    study.tell(trial, 0.5)
    assert watcher._get_stale_trial_ids(study._study_id) == []  # finished trials are never stale


def test_an_unreachable_proxy_is_one_clear_message(write_run, tmp_path):
    config = write_run()
    env = {**os.environ, "NOVA_STORAGE_URL": f"grpc://127.0.0.1:{free_port()}"}
    out = subprocess.run([sys.executable, "-m", "nova_trainer.cli", "tune", "--config", str(config),
                          "--out", str(tmp_path)], env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 2, out.stderr
    assert "cannot use the Optuna storage at 127.0.0.1" in out.stderr and "UNAVAILABLE" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_bad_grpc_url_names_the_fix(write_run, tmp_path):
    config = write_run()
    env = {**os.environ, "NOVA_STORAGE_URL": "grpc://proxy:notaport"}
    out = subprocess.run([sys.executable, "-m", "nova_trainer.cli", "tune", "--config", str(config),
                          "--out", str(tmp_path)], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "write grpc://host:port" in out.stderr, out.stderr


def worker(config: Path, url: str, index: int, out: Path) -> subprocess.Popen:
    log = open(out / f"worker-{index}.log", "w")
    return subprocess.Popen([sys.executable, "-m", "nova_trainer.cli", "tune", "--config", str(config),
                             "--worker", str(index), "--out", str(out)],
                            env={**os.environ, "NOVA_STORAGE_URL": url}, stdout=log, stderr=log)


@pytest.mark.integration
def test_workers_behind_the_proxy_recover_a_killed_workers_trial(write_run, pg_url, tmp_path):
    """The proxy holds the only database connections; a worker SIGKILLed mid-trial is found by the
    heartbeat kept through gRPC, its trial failed and retried once, and the budget is met."""
    config = write_run(trials=8, workers=2, model={"numBoostRound": 300, "earlyStoppingRounds": None})
    run = load_resolved(config)
    port = free_port()
    proxy = start_proxy(pg_url, port)
    url = f"grpc://127.0.0.1:{port}"
    try:
        victim = worker(config, url, 0, tmp_path)
        direct = open_storage(pg_url, 1, 4)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                study = optuna.load_study(study_name=run.study_name("AAA"), storage=direct)
                running = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
                if running and HEARTBEAT_ATTR in running[0].system_attrs:
                    break
            except KeyError:
                pass
            time.sleep(0.2)
        else:
            pytest.fail("the worker never started a trial: " + (tmp_path / "worker-0.log").read_text()[-2000:])
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
        killed = [t.number for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
        survivor = worker(config, url, 1, tmp_path)
        assert survivor.wait(timeout=400) == 0, (tmp_path / "worker-1.log").read_text()[-3000:]
    finally:
        out = stop(proxy)
    trials = study.get_trials(deepcopy=False)
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert all(t.state == TrialState.FAIL for t in trials if t.number in killed), out[-2000:]
    retried = [t for t in trials if t.system_attrs.get("failed_trial") in killed]
    assert len(retried) == len(killed) and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in retried)
    assert 8 <= progress(study).finished <= 9


def test_the_operator_creates_and_reads_studies_through_the_proxy(write_run, sqlite_proxy):
    from nova_operator.studies import Studies

    studies = Studies()
    run = load_resolved(write_run(symbols=("AAA", "BBB"), trials=3))
    url = f"grpc://127.0.0.1:{sqlite_proxy}"
    storage = studies.open_storage(url)
    assert studies.create_studies(run, storage) == [run.study_name("AAA"), run.study_name("BBB")]
    study = optuna.load_study(study_name=run.study_name("AAA"), storage=storage)
    study.optimize(lambda t: t.suggest_float("eta", 0.01, 0.3), n_trials=2)
    by_symbol = {p.symbol: p for p in studies.read_progress(run, storage)}
    assert by_symbol["AAA"].complete == 2 and by_symbol["AAA"].best_value == study.best_value
    assert by_symbol["BBB"].exists and by_symbol["BBB"].complete == 0
    studies.forget(url)
    assert studies.read_progress(run, studies.open_storage(url))[0].complete == 2
