"""`nova run`: the same YAML on one machine, end to end, with real worker processes."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing

import optuna
import pytest
from optuna.trial import TrialState

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def nova(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nova_trainer.local.cli", *args], capture_output=True, text=True, **kw)


def test_nova_run_tunes_refits_and_reports(write_run, tmp_path):
    config = write_run(name="local", symbols=("AAA", "BBB"), trials=6, workers=2)
    out = tmp_path / "out"
    result = nova("run", str(config), "--out", str(out), "--no-progress", timeout=500)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "AAA" in result.stdout and "BBB" in result.stdout
    header = next(line for line in result.stdout.splitlines() if line.strip().startswith("symbol"))
    assert header.split()[:5] == ["symbol", "trials", "pruned", "trial", "auc"]
    assert {"net", "DSR", "E[max]", "PBO", "hold.net", "B&H"} <= set(header.split())
    for symbol in ("AAA", "BBB"):
        card = json.loads((out / symbol / "card.json").read_text())
        assert (out / symbol / "model.ubj").stat().st_size > 0 and (out / symbol / "model-settings.json").exists()
        assert card["device"]["used"] == "cpu" and card["best_value"] > 0
        assert len(card["folds"]) == 2 and card["features"]
        assert 0 <= card["evaluation"]["dsr"] <= 1 and 0 <= card["evaluation"]["pbo"] <= 1
        assert card["holdout"]["rows"] > 0
        study = optuna.load_study(study_name=f"default.local.{symbol}", storage=f"sqlite:///{out / 'optuna.db'}")
        finished = [t for t in study.trials if t.state.is_finished()]
        assert 6 <= len(finished) <= 7
    report = (out / "report.html").read_text()
    assert report.startswith("<!DOCTYPE html>") and 1_000_000 < len(report) < 5_000_000  # plotly.js inlined once
    assert (out / "logs" / "prep.log").exists()  # one prep process fed both workers


def test_ctrl_c_stops_cleanly_and_a_rerun_resumes(write_run, tmp_path):
    config = write_run(name="resume", trials=10, workers=1,
                       model={"numBoostRound": 300, "earlyStoppingRounds": None})
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "nova_trainer.local.cli", "run", str(config), "--out", str(out),
                             "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    storage = f"sqlite:///{out / 'optuna.db'}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            # read-only until the run has made its study: opening the storage with Optuna creates its
            # tables, which would race the run's own creation of them (SQLite has no IF NOT EXISTS there)
            with closing(sqlite3.connect(f"file:{out / 'optuna.db'}?mode=ro", uri=True)) as db:
                if not db.execute("SELECT 1 FROM studies WHERE study_name = 'default.resume.AAA'").fetchone():
                    raise KeyError("no study yet")
            trials = optuna.load_study(study_name="default.resume.AAA", storage=storage).trials
            if sum(t.state.is_finished() for t in trials) >= 2 and any(t.state == TrialState.RUNNING for t in trials):
                break
        except (KeyError, Exception):
            pass
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr[-2000:]
    assert "run the same command again to resume" in stderr and "Traceback" not in stderr
    study = optuna.load_study(study_name="default.resume.AAA", storage=storage)
    finished_before = {t.number: t.state for t in study.trials if t.state.is_finished()}
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    result = nova("run", str(config), "--out", str(out), "--no-progress", timeout=500)
    assert result.returncode == 0, result.stderr[-3000:]
    study = optuna.load_study(study_name="default.resume.AAA", storage=storage)
    for number, state in finished_before.items():
        assert study.trials[number].state == state  # nothing finished was lost or redone
    from nova_trainer.tuning.budget import progress

    p = progress(study)
    assert 10 <= p.finished <= 10 and p.running == 0


def test_a_run_warm_started_from_an_earlier_local_run_tries_its_best_trials_first(write_run, tmp_path):
    """`nova run --warm-start-from runs/<old>`: the new study's first trials are the old run's best,
    fitted to the new search space (max_depth clipped to its new high of 3), and the study says so."""
    from nova.warm_start import WARM_START_ATTR

    space = {"eta": {"type": "float", "low": 0.05, "high": 0.3}, "max_depth": {"type": "int", "low": 4, "high": 8}}
    old = write_run(name="old", trials=5, workers=1, tuning={"searchSpace": space, "trials": 5, "workers": 1})
    assert nova("run", str(old), "--out", str(tmp_path / "old"), "--no-progress", timeout=500).returncode == 0
    space["max_depth"] = {"type": "int", "low": 2, "high": 3}
    new = write_run(name="new", trials=4, workers=1,
                    tuning={"searchSpace": space, "trials": 4, "workers": 1, "warmStart": {"topK": 2}})
    result = nova("run", str(new), "--out", str(tmp_path / "new"), "--no-progress",
                  "--warm-start-from", str(tmp_path / "old"), timeout=500)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "warm start from default.old.AAA: 2 trial(s) enqueued" in result.stderr
    before = optuna.load_study(study_name="default.old.AAA", storage=f"sqlite:///{tmp_path / 'old' / 'optuna.db'}")
    best = sorted((t for t in before.trials if t.state == TrialState.COMPLETE), key=lambda t: -t.value)[:2]
    after = optuna.load_study(study_name="default.new.AAA", storage=f"sqlite:///{tmp_path / 'new' / 'optuna.db'}")
    seeded = [t.system_attrs.get("fixed_params") for t in after.trials[:2]]
    assert seeded == [{"eta": t.params["eta"], "max_depth": 3} for t in best]  # clipped into the new range
    assert all(t.state == TrialState.COMPLETE for t in after.trials[:2])  # tried, before the sampler's own
    record = after.user_attrs[WARM_START_ATTR]
    assert record["from"] == "default.old.AAA" and any("max_depth" in n for n in record["notes"])


def test_bad_manifest_is_one_clear_message(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("apiVersion: nova.dev/v1alpha1\nkind: TrainingRun\nmetadata: {name: bad}\n"
                    "spec:\n  data: {symbols: [AAPL]}\n  tuning: {trials: 0}\n")
    result = nova("run", str(path))
    assert result.returncode == 2
    assert "spec.tuning.trials" in result.stderr and "Traceback" not in result.stderr
