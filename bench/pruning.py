"""Pruning pays: the same 40-trial study with and without the median pruner.

Same data (synthetic, 1600 daily bars, the minimal feature set), same sampler seed, one worker, no early
stopping (so every round a trial spends is visible). Reports boosting rounds spent, wall time and
the best value of each. The metric is AUC (maximize): `best_value_rel_diff` is
(best without pruning - best with pruning) / best without pruning, positive when pruning lost.

    python bench/pruning.py [--trials 40]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import optuna

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table, write_result  # noqa: E402

from nova.manifest import parse_run  # noqa: E402
from nova.spec import resolve  # noqa: E402
from nova_trainer.dataset import load_symbol_data  # noqa: E402
from nova_trainer.device import resolve_device  # noqa: E402
from nova_trainer.tuning.storage import open_storage  # noqa: E402
from nova_trainer.tuning.worker import tune_symbol  # noqa: E402


def manifest(pruner: str, trials: int) -> dict:
    return {"apiVersion": "nova.dev/v1alpha1", "kind": "TrainingRun", "metadata": {"name": f"prune-{pruner}"},
            "spec": {
                "data": {"source": "synthetic", "symbols": ["BENCH"], "bars": 1600, "seed": 5},
                "features": {"set": "minimal"},
                "validation": {"walkForward": {"folds": 3, "testSize": 120, "gap": 1, "minTrainSize": 600}},
                "model": {"numBoostRound": 100, "earlyStoppingRounds": None, "nthread": 1},
                "tuning": {"trials": trials, "metric": "auc", "sampler": {"type": "tpe", "seed": 1},
                           "pruner": {"type": pruner, "warmupSteps": 10, "startupTrials": 5}},
                "gpu": {"count": 0}}}


def run_one(pruner: str, trials: int, folder: Path) -> dict:
    run = resolve(parse_run(manifest(pruner, trials)))
    storage = open_storage(f"sqlite:///{folder / (pruner + '.db')}", 10, 30)
    data = load_symbol_data(run.spec, "BENCH")
    t0 = time.perf_counter()
    outcome = tune_symbol(run, data, storage, 0, resolve_device("cpu"))
    wall = time.perf_counter() - t0
    study = optuna.load_study(study_name=run.study_name("BENCH"), storage=storage)
    rounds = sum(t.user_attrs.get("rounds", 0) for t in study.trials)
    return {"pruner": pruner, "trials": len(study.trials), "pruned": outcome.progress.pruned,
            "rounds": rounds, "wall_s": wall, "best_value": outcome.progress.best_value}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=40)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as folder:
        full = run_one("none", args.trials, Path(folder))
        pruned = run_one("median", args.trials, Path(folder))
    payload = {
        "metric": "auc", "direction": "maximize", "full": full, "pruned": pruned,
        "rounds_ratio_pruned_over_full": pruned["rounds"] / full["rounds"],
        "wall_ratio_pruned_over_full": pruned["wall_s"] / full["wall_s"],
        "best_value_rel_diff": (full["best_value"] - pruned["best_value"]) / full["best_value"],
    }
    path = write_result("pruning", payload)
    print(table(["study", "trials", "pruned", "boosting rounds", "wall (s)", "best AUC"], [
        ["no pruning", full["trials"], full["pruned"], full["rounds"], full["wall_s"], full["best_value"]],
        ["median pruner", pruned["trials"], pruned["pruned"], pruned["rounds"], pruned["wall_s"], pruned["best_value"]],
    ]))
    print(f"\nrounds ratio {payload['rounds_ratio_pruned_over_full']:.3f}, best value rel. diff "
          f"{payload['best_value_rel_diff']:+.4f} (positive = pruning lost) -> {path}")


if __name__ == "__main__":
    main()
