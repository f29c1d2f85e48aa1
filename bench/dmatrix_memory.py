"""Peak memory and time from prep shards to a trained model: naive DMatrix vs Nova's QuantileDMatrix.

Same 2,000,000 x 100 float32 matrix, stored as Parquet prep shards. Each way runs in its own fresh
process and reports its own peak RSS (getrusage), so the two never share an allocator:
- naive: pandas reads every shard, concatenates, builds a DMatrix, trains;
- nova:  `ParquetBatches` feeds a QuantileDMatrix batch by batch (100k rows), never holding the raw
         matrix, then trains.
Training is the same in both: hist, depth 6, 50 rounds, 2 threads, CPU.

    python bench/dmatrix_memory.py [--rows 2000000] [--cols 100]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table, write_result  # noqa: E402

PARAMS = {"tree_method": "hist", "max_depth": 6, "nthread": 2, "objective": "binary:logistic",
          "max_bin": 256, "verbosity": 0}
ROUNDS = 50


def make_shards(folder: Path, rows: int, cols: int, shard_rows: int = 100_000) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    weights = rng.standard_normal(cols).astype(np.float32)
    paths = []
    for i, start in enumerate(range(0, rows, shard_rows)):
        n = min(shard_rows, rows - start)
        X = rng.standard_normal((n, cols), dtype=np.float32)
        y = ((X @ weights + rng.standard_normal(n, dtype=np.float32) * 4) > 0).astype(np.float32)
        columns = {f"f{j:03d}": X[:, j] for j in range(cols)} | {"__target__": y}
        path = folder / f"shard-{i:04d}.parquet"
        pq.write_table(pa.table(columns), path, compression="snappy")
        paths.append(str(path))
    return paths


def run_naive(paths: list[str]) -> dict:
    import pandas as pd
    import xgboost as xgb

    t0 = time.perf_counter()
    frame = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
    y = frame.pop("__target__").to_numpy()
    dtrain = xgb.DMatrix(frame, y)
    t1 = time.perf_counter()
    booster = xgb.train(PARAMS, dtrain, ROUNDS)
    t2 = time.perf_counter()
    return {"load_s": t1 - t0, "train_s": t2 - t1, "trees": booster.num_boosted_rounds()}


def run_nova(paths: list[str]) -> dict:
    import xgboost as xgb

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "trainer_image"))
    from nova_trainer.matrices import ParquetBatches

    t0 = time.perf_counter()
    dtrain = xgb.QuantileDMatrix(ParquetBatches(paths, label="__target__", batch_rows=100_000),
                                 max_bin=PARAMS["max_bin"], nthread=2)
    t1 = time.perf_counter()
    booster = xgb.train(PARAMS, dtrain, ROUNDS)
    t2 = time.perf_counter()
    return {"load_s": t1 - t0, "train_s": t2 - t1, "trees": booster.num_boosted_rounds()}


def child(mode: str, shard_dir: str) -> None:
    paths = sorted(str(p) for p in Path(shard_dir).glob("*.parquet"))
    result = (run_naive if mode == "naive" else run_nova)(paths)
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--cols", type=int, default=100)
    parser.add_argument("--child", choices=["naive", "nova"])
    parser.add_argument("--shards")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.shards)
        return
    with tempfile.TemporaryDirectory(prefix="nova-shards-") as folder:
        make_shards(Path(folder), args.rows, args.cols)
        results = {}
        for mode in ("naive", "nova"):
            out = subprocess.run([sys.executable, __file__, "--child", mode, "--shards", folder],
                                 check=True, capture_output=True, text=True)
            results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    naive, nova = results["naive"], results["nova"]
    payload = {
        "rows": args.rows, "cols": args.cols, "rounds": ROUNDS, "params": PARAMS,
        "naive_dmatrix": naive, "nova_quantile_iter": nova,
        "peak_ratio_quantile_over_dmatrix": nova["peak_rss_mib"] / naive["peak_rss_mib"],
        "time_ratio_quantile_over_dmatrix": (nova["load_s"] + nova["train_s"]) / (naive["load_s"] + naive["train_s"]),
    }
    path = write_result("dmatrix_memory", payload)
    print(table(["way", "peak RSS (MiB)", "load (s)", "train (s)"], [
        ["naive: pandas + DMatrix", round(naive["peak_rss_mib"]), naive["load_s"], naive["train_s"]],
        ["Nova: QuantileDMatrix from shard batches", round(nova["peak_rss_mib"]), nova["load_s"], nova["train_s"]],
    ]))
    print(f"\npeak ratio (Nova / naive): {payload['peak_ratio_quantile_over_dmatrix']:.3f}  -> {path}")


if __name__ == "__main__":
    main()
