"""What trusting the results costs: DSR, PBO (S=16) and the report for 3 symbols x 200 trials, over
the tuning time of the same study (target: under 5%).

The studies are tuned for real (synthetic daily bars, 5 folds x 100 test bars, one in-process
worker, one XGBoost thread, SQLite storage), refitted, then timed: the statistics from the stored
out-of-sample records (DSR of every trial, PBO over every complete trial) and the whole report.

    python bench/selection.py [--trials 200] [--symbols 3]
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

from nova.spec import TrainingRun, resolve  # noqa: E402
from nova_trainer.dataset import load_symbol_data  # noqa: E402
from nova_trainer.evaluation.selection import evaluate_study  # noqa: E402
from nova_trainer.local.report import write_report  # noqa: E402
from nova_trainer.refit import refit_symbol  # noqa: E402
from nova_trainer.tuning.storage import open_storage  # noqa: E402
from nova_trainer.tuning.study import open_study  # noqa: E402
from nova_trainer.tuning.worker import run_worker  # noqa: E402


def manifest(trials: int, symbols: list[str]) -> dict:
    return {"apiVersion": "nova.dev/v1alpha1", "kind": "TrainingRun", "metadata": {"name": "selection"},
            "spec": {
                "data": {"source": "synthetic", "symbols": symbols, "bars": 2000, "seed": 5},
                "features": {"set": "minimal"},
                "validation": {"walkForward": {"folds": 5, "testSize": 100, "gap": 1, "minTrainSize": 500}},
                "model": {"numBoostRound": 60, "earlyStoppingRounds": 10, "nthread": 1},
                "tuning": {"trials": trials, "workers": 1, "sampler": {"type": "tpe", "seed": 1},
                           "pruner": {"type": "median", "warmupSteps": 10, "startupTrials": 5}},
                "evaluation": {"pboPartitions": 16},
                "gpu": {"count": 0}}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--symbols", type=int, default=3)
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    symbols = [f"SEL{i}" for i in range(args.symbols)]
    run = resolve(TrainingRun.model_validate(manifest(args.trials, symbols)))
    rows, per_symbol = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        storage = open_storage(f"sqlite:///{out / 'optuna.db'}", 10, 30)
        data = {}
        for s in symbols:
            open_study(run, s, storage)
            data[s] = load_symbol_data(run.spec, s)
        t0 = time.perf_counter()
        run_worker(run, storage, 0, iter(data.items()))
        tune_s = time.perf_counter() - t0
        for s in symbols:
            refit_symbol(run, s, storage, out, data=data[s])
        eval_s = 0.0
        for s in symbols:
            study = optuna.load_study(study_name=run.study_name(s), storage=storage)
            t0 = time.perf_counter()
            ev = evaluate_study(study, run.spec)
            summary = ev.summary()
            spent = time.perf_counter() - t0
            eval_s += spent
            states = [t.state.name for t in study.get_trials(deepcopy=False)]
            per_symbol[s] = {"complete": states.count("COMPLETE"), "pruned": states.count("PRUNED"),
                             "dsr": summary["dsr"], "pbo": summary["pbo"], "sharpe_net": summary["sharpe_net"],
                             "expected_max_sharpe": summary["expected_max_sharpe"], "eval_s": spent}
            rows.append([s, states.count("COMPLETE"), states.count("PRUNED"), round(summary["sharpe_net"], 2),
                         round(summary["expected_max_sharpe"], 2), round(summary["dsr"], 3), round(summary["pbo"], 3),
                         round(spent, 3)])
        t0 = time.perf_counter()
        report = write_report(run, storage, out)
        report_s = time.perf_counter() - t0
        report_bytes = report.stat().st_size
    ratio = (eval_s + report_s) / tune_s
    print(table(["symbol", "complete", "pruned", "net Sharpe", "E[max]", "DSR", "PBO", "DSR+PBO (s)"], rows))
    print(table(["part", "seconds"], [["tuning (3 studies)", round(tune_s, 2)], ["DSR + PBO (S=16)", round(eval_s, 3)],
                                      ["report", round(report_s, 2)]]))
    print(f"overhead_ratio = {ratio:.4f} (target < 0.05); report {report_bytes / 1e6:.2f} MB")
    write_result("selection", {"trials": args.trials, "symbols": args.symbols, "pbo_partitions": 16,
                               "tuning_s": tune_s, "dsr_pbo_s": eval_s, "report_s": report_s,
                               "report_bytes": report_bytes, "overhead_ratio": ratio, "per_symbol": per_symbol})


if __name__ == "__main__":
    main()
