"""Trials per minute with 1 and 2 worker processes on one study (real `nova-trainer tune` workers,
one XGBoost thread each, embedded SQLite storage shared through the run folder).

Two rates per run: over the tuning window (first trial started to last trial finished, from the
storage's own timestamps), which is the throughput a study gets from its workers, and over the
whole wall time, which adds each process's fixed start (imports, data, features: ~5 s here) once.
`speedup_2_over_1` is the first; `speedup_wall_2_over_1` the second.

    python bench/scaling.py [--trials 20]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table, write_result  # noqa: E402


def manifest(name: str, trials: int, workers: int) -> dict:
    return {"apiVersion": "nova.dev/v1alpha1", "kind": "TrainingRun", "metadata": {"name": name},
            "spec": {
                "data": {"source": "synthetic", "symbols": ["SCALE"], "bars": 2500, "seed": 3},
                "validation": {"walkForward": {"folds": 3, "testSize": 120, "gap": 1, "minTrainSize": 600}},
                "model": {"numBoostRound": 120, "earlyStoppingRounds": None, "nthread": 1},
                "tuning": {"trials": trials, "workers": workers, "pruner": {"type": "none"},
                           "sampler": {"type": "random", "seed": 1}},
                "gpu": {"count": 0}}}


def run_workers(folder: Path, trials: int, workers: int) -> dict:
    name = f"scale-{workers}"
    config = folder / f"{name}.yaml"
    config.write_text(yaml.safe_dump(manifest(name, trials, workers)))
    out = folder / name
    out.mkdir()
    url = f"sqlite:///{out / 'optuna.db'}"
    env = {**os.environ, "NOVA_STORAGE_URL": url}
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "nova_trainer.cli", "--log-level", "WARNING", "tune",
                               "--config", str(config), "--worker", str(i), "--out", str(out)], env=env)
             for i in range(workers)]
    for p in procs:
        if p.wait() != 0:
            raise SystemExit(f"worker failed with {p.returncode}")
    wall = time.perf_counter() - t0
    study = optuna.load_study(study_name=f"default.{name}.SCALE", storage=url)
    finished = [t for t in study.trials if t.state.is_finished()]
    window = (max(t.datetime_complete for t in finished) - min(t.datetime_start for t in finished)).total_seconds()
    return {"workers": workers, "trials": len(finished), "wall_s": wall, "tuning_window_s": window,
            "trials_per_minute": len(finished) / window * 60, "trials_per_minute_wall": len(finished) / wall * 60}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        one = run_workers(Path(folder), args.trials, 1)
        two = run_workers(Path(folder), args.trials, 2)
    payload = {"one_worker": one, "two_workers": two, "cpus": os.cpu_count(),
               "speedup_2_over_1": two["trials_per_minute"] / one["trials_per_minute"],
               "speedup_wall_2_over_1": two["trials_per_minute_wall"] / one["trials_per_minute_wall"],
               "load_average_at_end": os.getloadavg()}
    path = write_result("scaling", payload)
    print(table(["workers", "trials", "tuning window (s)", "trials/min", "wall (s)", "trials/min (wall)"], [
        [r["workers"], r["trials"], r["tuning_window_s"], r["trials_per_minute"], r["wall_s"],
         r["trials_per_minute_wall"]] for r in (one, two)]))
    print(f"\nspeedup 2 over 1: {payload['speedup_2_over_1']:.2f}x over the tuning window, "
          f"{payload['speedup_wall_2_over_1']:.2f}x over the wall time -> {path}")


if __name__ == "__main__":
    main()
