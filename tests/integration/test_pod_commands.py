"""The worker pod's commands as the operator runs them: `prep --linger` (native sidecar) next to
`tune --shards` (trainer), then `refit`, against a real PostgreSQL and a resolved run.json."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from nova.config import load_resolved

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "nova_trainer.cli", *args]


def test_prep_sidecar_feeds_the_trainer_then_refit_writes_models(write_run, pg_url, tmp_path):
    from nova_trainer.data.synthetic import generate

    bars_dir = tmp_path / "bars"
    bars_dir.mkdir()
    for symbol in ("AAA", "BBB"):  # NOPE_BAD has no file: prep must report it, not hang the run
        generate(symbol, 900, 11).reset_index().to_csv(bars_dir / f"{symbol}.csv", index=False)
    manifest_path = write_run(name="pod", symbols=("AAA", "NOPE_BAD", "BBB"), trials=4,
                              data={"source": "file", "uri": str(bars_dir)})
    run = load_resolved(manifest_path)
    config = tmp_path / "run.json"
    config.write_text(run.to_json())  # what the operator puts in the ConfigMap
    features, output = tmp_path / "features", tmp_path / "output"
    env = {**os.environ, "NOVA_STORAGE_URL": pg_url}
    sidecar = subprocess.Popen(cli("prep", "--config", str(config), "--out", str(features), "--linger"),
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        trainer = subprocess.run(cli("tune", "--config", str(config), "--worker", "0", "--shards", str(features),
                                     "--out", str(output)), env=env, capture_output=True, text=True, timeout=500)
        assert trainer.returncode == 0, trainer.stderr[-3000:]
        assert sidecar.poll() is None  # the sidecar outlives the trainer; the kubelet stops it
    finally:
        sidecar.send_signal(signal.SIGTERM)
        assert sidecar.wait(20) == 0
    assert "NOPE_BAD: skipped" in trainer.stdout and "unknown symbol 'NOPE_BAD'" in trainer.stdout
    assert "AAA: worker 0 ran" in trainer.stdout and "BBB: worker 0 ran" in trainer.stdout
    assert not list(features.glob("*.arrow"))  # deleteAfterUse
    refit = subprocess.run(cli("refit", "--config", str(config), "--out", str(output)), env=env,
                           capture_output=True, text=True, timeout=300)
    assert refit.returncode == 0, refit.stderr[-3000:]
    summary = json.loads((output / "summary.json").read_text())
    assert set(summary) == {"AAA", "NOPE_BAD", "BBB"} and "error" in summary["NOPE_BAD"]
    assert 0 <= summary["AAA"]["evaluation"]["dsr"] <= 1 and "pbo" in summary["AAA"]["evaluation"]
    assert len((output / "summary.json").read_bytes()) < 4096  # the termination message's limit
    card = json.loads((output / "AAA" / "card.json").read_text())
    assert card["study"] == "default.pod.AAA" and card["best_trial"] >= 0
    assert "nova-test-pw" not in (output / "AAA" / "card.json").read_text()
