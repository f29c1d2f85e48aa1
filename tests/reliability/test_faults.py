"""Faults with real processes and a real PostgreSQL. For each: the run ends as it should, every
finished symbol's study holds its budget and no more than `workers - 1` extra trials, no trial stays
RUNNING, and nothing finished is lost. (A SIGKILLed worker and a PostgreSQL restart mid-run are
covered by tests/integration/test_distributed_tuning.py; operator restarts by
tests/operator/test_operator.py.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from nova.config import load_resolved
from nova_trainer.tuning.budget import progress
from nova_trainer.tuning.storage import open_storage
from tests.conftest import small_run_manifest
from tests.reliability.tcp_proxy import Proxy

pytestmark = [pytest.mark.reliability, pytest.mark.integration, pytest.mark.timeout(400)]


def _tune(config: Path, url: str, index: int, out: Path, shards: Path | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "nova_trainer.cli", "tune", "--config", str(config), "--worker", str(index),
           "--out", str(out)]
    if shards:
        cmd += ["--shards", str(shards)]
    return subprocess.Popen(cmd, env={**os.environ, "NOVA_STORAGE_URL": url}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _study(config: Path, url: str, symbol: str) -> optuna.Study:
    run = load_resolved(config)
    return optuna.load_study(study_name=run.study_name(symbol), storage=open_storage(url, 1, 4))


def _check_budget(config: Path, url: str, symbol: str, trials: int, workers: int) -> None:
    p = progress(_study(config, url, symbol))
    assert p.running == 0 and p.waiting == 0, p
    assert trials <= p.finished <= trials + workers - 1, p


def test_prep_sidecar_crashing_mid_universe(pg_url, tmp_path):
    """The prep process is SIGKILLed mid-universe (after two shards: with maxAhead 2 and no trainer
    yet, it is waiting to write the third) and never comes back: the trainers tune every symbol that
    was prepared, report each missing one by name, and exit 0."""
    symbols = [f"S{i}" for i in range(4)]
    manifest = small_run_manifest(name="prepcrash", symbols=symbols, trials=4, workers=2)
    manifest["spec"]["prep"] = {"maxAhead": 2, "waitTimeoutSeconds": 2, "deleteAfterUse": False}
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(manifest))
    shards = tmp_path / "features"
    prep = subprocess.Popen([sys.executable, "-m", "nova_trainer.cli", "prep", "--config", str(config),
                             "--out", str(shards)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 90
    while not (shards / "S1.ready").exists():
        assert time.monotonic() < deadline and prep.poll() is None, "prep never wrote a shard"
        time.sleep(0.02)
    time.sleep(0.5)  # prep is now blocked on backpressure, before S2
    prep.send_signal(signal.SIGKILL)
    prep.wait()
    ready = [s for s in symbols if (shards / f"{s}.ready").exists()]
    missing = [s for s in symbols if s not in ready]
    assert ready == ["S0", "S1"] and missing == ["S2", "S3"], (ready, missing)
    workers = [_tune(config, pg_url, i, tmp_path / f"out{i}", shards) for i in range(2)]
    results = [w.communicate(timeout=300) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], results[0][1][-3000:]
    for stdout, _ in results:
        for symbol in missing:
            assert f"{symbol}: skipped: {symbol}: no shard after 2s" in stdout, stdout
            assert "is the prep container running" in stdout
    for symbol in ready:
        _check_budget(config, pg_url, symbol, trials=4, workers=2)
    for symbol in missing:
        with pytest.raises(KeyError):  # no study was started for a symbol with no data
            _study(config, pg_url, symbol)


def test_storage_unreachable_at_start_then_recovers(postgres, pg_url, tmp_path):
    """The database hangs up on every connection when the workers start; once each worker has been
    refused at least twice, it answers. The workers say which host they are waiting for (never the
    password), then finish the budget."""
    proxy = Proxy(postgres.port)
    proxy.open()
    url = pg_url.replace(f"127.0.0.1:{postgres.port}", f"127.0.0.1:{proxy.port}")
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(small_run_manifest(name="late", trials=5, workers=2)))
    workers = [_tune(config, url, i, tmp_path / f"out{i}") for i in range(2)]
    try:
        deadline = time.monotonic() + 60
        while proxy.refused < 4:
            assert time.monotonic() < deadline and all(w.poll() is None for w in workers), proxy.refused
            time.sleep(0.05)
        proxy.up()
        results = [w.communicate(timeout=300) for w in workers]
    finally:
        proxy.close()
    assert [w.returncode for w in workers] == [0, 0], results[0][1][-3000:]
    for _, stderr in results:
        assert f"storage at 127.0.0.1:{proxy.port} not ready" in stderr and "retry 1/5" in stderr, stderr[-2000:]
        assert "nova-test-pw" not in stderr and "Traceback" not in stderr
    assert proxy.connections > 0
    _check_budget(config, pg_url, "AAA", trials=5, workers=2)


def test_a_live_worker_whose_trial_is_failed_as_stale_carries_on(pg_url, tmp_path):
    """A worker starved of CPU for longer than graceSeconds (seen with 50 workers on 2 cores) finds
    that another worker has failed its running trial as stale and queued the retry. It must drop
    that trial and carry on, not crash with "Cannot tell a FAIL trial"; the retry is run and the
    budget is met."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.trial import TrialState

    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(small_run_manifest(
        name="stale", trials=4, workers=1, model={"numBoostRound": 400, "earlyStoppingRounds": None})))
    worker = _tune(config, pg_url, 0, tmp_path / "out")
    deadline = time.monotonic() + 120
    victim = None
    while victim is None:
        assert time.monotonic() < deadline and worker.poll() is None, "the worker never started a trial"
        try:
            study = _study(config, pg_url, "AAA")
            victim = next((t for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING), None)
        except KeyError:
            pass
        time.sleep(0.1)
    # what another worker's fail_stale_trials does: FAIL the trial, then queue its retry
    study._storage.set_trial_state_values(victim._trial_id, state=TrialState.FAIL)
    RetryHeartbeatStaleTrialCallback(max_retry=1)(study, study._storage.get_trial(victim._trial_id))
    stdout, stderr = worker.communicate(timeout=300)
    assert worker.returncode == 0, stderr[-3000:]
    assert "was failed as stale by another worker" in stderr, stderr[-3000:]
    trials = _study(config, pg_url, "AAA").get_trials(deepcopy=False)
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    assert retried and retried[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    _check_budget(config, pg_url, "AAA", trials=4, workers=1)
