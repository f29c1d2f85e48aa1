"""The pod's layout overlaps: with the real commands as two processes (`nova-trainer prep --linger`
beside `nova-trainer tune --shards`), the trainer trains the first symbol before prep has finished
the last one. Checked by the order of their events in the shared timeline (one file, O_APPEND:
the order things happened in), never by how long anything took (issue 19)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import yaml

from nova_trainer import timeline
from tests.conftest import small_run_manifest

SYMBOLS = ["AAA", "BBB", "CCC"]


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "nova_trainer.cli", "--log-level", "WARNING", *args]


def test_trainer_starts_the_first_symbol_before_prep_finishes_the_last(tmp_path: Path):
    manifest = small_run_manifest(symbols=SYMBOLS, trials=2)
    manifest["spec"]["prep"] = {"maxAhead": 1, "waitTimeoutSeconds": 300}
    config, shards, out, line = tmp_path / "run.yaml", tmp_path / "features", tmp_path / "out", tmp_path / "t.jsonl"
    config.write_text(yaml.safe_dump(manifest))
    env = {k: v for k, v in os.environ.items() if k != "NOVA_STORAGE_URL"}
    env.update({timeline.ENV: str(line), "NOVA_CPUS": "1"})
    prep = subprocess.Popen(_command("prep", "--linger", "--config", str(config), "--out", str(shards)), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        tune = subprocess.run(_command("tune", "--config", str(config), "--shards", str(shards), "--out", str(out)),
                              env=env, capture_output=True, text=True, timeout=600)
    finally:
        prep.send_signal(signal.SIGTERM)  # as the kubelet stops a native sidecar after the trainer
        prep_out, _ = prep.communicate(timeout=60)
    assert tune.returncode == 0, tune.stdout + tune.stderr
    assert prep.returncode == 0 and "3 symbol(s) ready, 0 failed" in prep_out, prep_out
    assert "skipped" not in tune.stdout, tune.stdout

    order = [(e["who"], e["symbol"], e["event"]) for e in timeline.read(line)]
    first_training = order.index(("trainer", SYMBOLS[0], "train_start"))
    last_ready = order.index(("prep", SYMBOLS[-1], "ready"))
    assert first_training < last_ready, order
    # and every symbol went through the whole path, in the order the timeline documents
    for s in SYMBOLS:
        steps = [order.index(("prep", s, e)) for e in ("start", "built", "written", "ready")]
        steps += [order.index(("trainer", s, e)) for e in ("noticed", "loaded", "train_start", "train_end")]
        assert steps == sorted(steps), (s, order)
    assert [w for w, _, e in order if e == "process"] in (["prep", "trainer"], ["trainer", "prep"])


def test_in_process_training_leaves_prep_a_core_while_it_builds(monkeypatch):
    """`nova run` and `nova-trainer tune` without shards build the next symbols on a thread: each
    trial that starts while that thread has work gets one thread less than the budget, and the full
    budget once every symbol is built (XGBoost's OpenMP threads must not share prep's core)."""
    import threading

    from nova.manifest import parse_run
    from nova.spec import resolve
    from nova_trainer import cpus, sources

    monkeypatch.setenv("NOVA_CPUS", "4")
    manifest = small_run_manifest(symbols=SYMBOLS)
    del manifest["spec"]["model"]["nthread"]  # the budget decides
    run = resolve(parse_run(manifest))
    release = threading.Event()

    def built(run, symbol):
        if symbol == SYMBOLS[-1]:
            release.wait(30)  # the last symbol is still being built until the test lets it finish
        return symbol

    monkeypatch.setattr(sources, "_built", built)
    seen = {}
    for symbol, _ in sources.prefetched(run, ahead=1):
        if symbol == SYMBOLS[1]:
            release.set()
            for _ in range(300):  # wait for the prep thread to have built the last one
                if not cpus._prep_busy():
                    break
                threading.Event().wait(0.01)
        seen[symbol] = cpus.model_threads(run.spec)
    assert seen == {"AAA": 3, "BBB": 4, "CCC": 4}
    assert cpus.model_threads(run.spec) == 4 and cpus._prep_busy is None  # nothing prefetching any more
