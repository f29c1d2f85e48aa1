"""Peak memory and time from an object-store Parquet universe to a trained model, 2M/4M/8M rows.

The universe (100 float32 features and a label, in Parquet files of 100k rows) is written to a real
S3-compatible server on loopback (SeaweedFS, tests/s3/build.sh). Each (way, size) then runs in its
own fresh process, which reports its own peak RSS (getrusage) and the time from the first byte read
to the trained model:
- streaming (Nova's): `nova_trainer.streaming` reads row batches straight from the bucket into an
  external-memory QuantileDMatrix (pages on local disk), then trains;
- in-memory: reads the whole table from the bucket (pyarrow -> pandas), builds a QuantileDMatrix
  from the frame (Nova's `make_matrices`, the way a symbol's features are trained), then trains;
- floor: XGBoost alone, no store and no data layer: the same shape of batches made in memory by
  numpy, into the same external-memory QuantileDMatrix. What it grows by from the smallest size to
  the largest is XGBoost's own per-row training state (label, gradient pair, prediction cache, row
  partition: about 40 B a row measured), which any way of feeding XGBoost pays; the difference
  between Nova's growth and the floor's is what Nova's streaming adds per row.
Training is the same in all three: hist, depth 6, ROUNDS rounds, 2 threads, CPU.

    python bench/object_store_scaling.py [--sizes 2000000 4000000 8000000] [--inmemory 2000000 4000000]
                                         [--floor 2000000 8000000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import xgboost as xgb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "trainer_image"))
from _common import table, write_result  # noqa: E402

PARAMS = {"tree_method": "hist", "max_depth": 6, "nthread": 2, "objective": "binary:logistic",
          "max_bin": 256, "verbosity": 0}
ROUNDS = 10
COLS = 100
PART_ROWS = 100_000
LABEL = "__target__"


def write_universe(server, bucket: str, sizes: list[int]) -> dict[int, str]:
    """Each 100k-row part is generated once and written under every size's prefix that holds it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    fs = server.filesystem()
    rng = np.random.default_rng(0)
    weights = rng.standard_normal(COLS).astype(np.float32)
    for i in range(max(sizes) // PART_ROWS):
        X = rng.standard_normal((PART_ROWS, COLS), dtype=np.float32)
        y = ((X @ weights + rng.standard_normal(PART_ROWS, dtype=np.float32) * 4) > 0).astype(np.float32)
        part = pa.table({f"f{j:03d}": X[:, j] for j in range(COLS)} | {LABEL: y})
        for size in sizes:
            if i * PART_ROWS < size:
                with fs.open_output_stream(f"{bucket}/u{size}/part-{i:04d}.parquet") as f:
                    pq.write_table(part, f, compression="snappy")
    return {size: f"s3://{bucket}/u{size}/" for size in sizes}


def run_streaming(uri: str, endpoint: str) -> dict:
    from nova.spec import ObjectStoreSpec
    from nova_trainer.streaming import train_from_store

    t0 = time.perf_counter()
    booster, kind = train_from_store(uri, LABEL, PARAMS, ROUNDS, store=ObjectStoreSpec(endpoint=endpoint),
                                     external="always")
    return {"seconds": time.perf_counter() - t0, "matrix": kind, "trees": booster.num_boosted_rounds()}


def run_inmemory(uri: str, endpoint: str) -> dict:
    import pyarrow.dataset as ds

    from nova.spec import ObjectStoreSpec
    from nova_trainer import store as stores
    from nova_trainer.matrices import make_matrices

    t0 = time.perf_counter()
    p = stores.place(uri, ObjectStoreSpec(endpoint=endpoint))
    frame = ds.dataset(p.path, filesystem=p.fs, format="parquet").to_table().to_pandas()
    y = frame.pop(LABEL).to_numpy()
    dtrain, _, kind = make_matrices(frame, y, None, None, True, PARAMS["max_bin"], PARAMS["nthread"])
    booster = xgb.train(PARAMS, dtrain, ROUNDS)
    return {"seconds": time.perf_counter() - t0, "matrix": kind, "trees": booster.num_boosted_rounds()}


class GeneratedBatches(xgb.DataIter):
    """The floor's data: PART_ROWS x COLS float32 batches made in memory (numpy), as many as `rows`."""

    def __init__(self, rows: int) -> None:
        super().__init__(cache_prefix=os.path.join(tempfile.mkdtemp(prefix="nova-floor-"), "pages"),
                         release_data=True, on_host=False)
        self.rows, self.i = rows, 0

    def reset(self) -> None:
        self.i = 0

    def next(self, input_data) -> bool:
        if self.i * PART_ROWS >= self.rows:
            return False
        X = np.random.default_rng(self.i).standard_normal((PART_ROWS, COLS), dtype=np.float32)
        input_data(data=X, label=(X[:, 0] > 0).astype(np.float32))
        self.i += 1
        return True


def run_floor(uri: str, endpoint: str) -> dict:
    batches = GeneratedBatches(int(uri))
    t0 = time.perf_counter()
    matrix = xgb.ExtMemQuantileDMatrix(batches, max_bin=PARAMS["max_bin"], nthread=PARAMS["nthread"])
    booster = xgb.train(PARAMS, matrix, ROUNDS)
    seconds = time.perf_counter() - t0
    shutil.rmtree(os.path.dirname(batches.cache_prefix), ignore_errors=True)
    return {"seconds": seconds, "matrix": "ExtMemQuantileDMatrix", "trees": booster.num_boosted_rounds()}


def child(mode: str, uri: str, endpoint: str) -> None:
    result = {"streaming": run_streaming, "inmemory": run_inmemory, "floor": run_floor}[mode](uri, endpoint)
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[2_000_000, 4_000_000, 8_000_000])
    parser.add_argument("--inmemory", type=int, nargs="*", default=[2_000_000, 4_000_000])
    parser.add_argument("--floor", type=int, nargs="*", default=[2_000_000, 8_000_000])
    parser.add_argument("--child", choices=["streaming", "inmemory", "floor"])
    parser.add_argument("--uri")
    parser.add_argument("--endpoint")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.uri, args.endpoint)
        return
    from tests.s3.server import start_s3

    load_before = os.getloadavg()
    server = start_s3()
    env = {**os.environ, **server.env(), "PYTHONPATH": f"{ROOT}:{ROOT / 'trainer_image'}"}
    try:
        t0 = time.perf_counter()
        uris = write_universe(server, server.make_bucket("universe"), sorted(set(args.sizes) | set(args.inmemory)))
        write_s = time.perf_counter() - t0
        results: dict[str, dict[int, dict]] = {"streaming": {}, "inmemory": {}, "floor": {}}
        for mode, sizes in (("streaming", args.sizes), ("inmemory", args.inmemory), ("floor", args.floor)):
            for size in sizes:
                uri = str(size) if mode == "floor" else uris[size]
                out = subprocess.run([sys.executable, __file__, "--child", mode, "--uri", uri, "--endpoint",
                                      server.endpoint], capture_output=True, text=True, env=env)
                if out.returncode != 0:
                    raise SystemExit(f"{mode} {size}: {out.stderr[-2000:]}")
                results[mode][size] = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"{mode:>9} {size:>9,} rows: {results[mode][size]}", flush=True)
    finally:
        server.destroy()
    s, m, f = results["streaming"], results["inmemory"], results["floor"]
    small, large = min(args.sizes), max(args.sizes)
    floor_growth = (f[large]["peak_rss_mib"] - f[small]["peak_rss_mib"]) if small in f and large in f else None
    payload = {
        "cols": COLS, "rounds": ROUNDS, "params": PARAMS, "part_rows": PART_ROWS, "universe_write_s": write_s,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "streaming": {str(k): v for k, v in s.items()}, "inmemory": {str(k): v for k, v in m.items()},
        "floor": {str(k): v for k, v in f.items()},
        "peak_growth_8m_over_2m": s[large]["peak_rss_mib"] / s[small]["peak_rss_mib"],
        "xgboost_floor_growth_8m_over_2m_mib": floor_growth,
        "streaming_growth_8m_over_2m_mib": s[large]["peak_rss_mib"] - s[small]["peak_rss_mib"],
        "peak_growth_8m_over_2m_beyond_floor": ((s[large]["peak_rss_mib"] - floor_growth) / s[small]["peak_rss_mib"]
                                                if floor_growth is not None else None),
        "peak_ratio_streaming_over_inmemory_2m": (s[small]["peak_rss_mib"] / m[small]["peak_rss_mib"]
                                                  if small in m else None),
        "targets": {"peak_growth_8m_over_2m": 1.25, "peak_ratio_streaming_over_inmemory_2m": 0.33},
    }
    path = write_result("object_store_scaling", payload)
    rows = []
    for size in sorted(set(s) | set(m) | set(f)):
        rows.append([f"{size:,}", *[cell for way in (s, m, f) for cell in (
            (round(way[size]["peak_rss_mib"]), round(way[size]["seconds"], 1)) if size in way else ("-", "-"))]])
    print(table(["rows x 100", "streaming peak RSS (MiB)", "streaming s", "in-memory peak RSS (MiB)",
                 "in-memory s", "floor peak RSS (MiB)", "floor s"], rows))
    ratio = payload["peak_ratio_streaming_over_inmemory_2m"]
    growth = payload["peak_growth_8m_over_2m"]
    print(f"\npeak growth {large:,} / {small:,} rows (streaming): {growth:.3f} (target <= 1.25)"
          + (f"; streaming / in-memory at {small:,}: {ratio:.3f} (target <= 0.33)" if ratio else "")
          + (f"\nXGBoost's own growth (floor) {floor_growth:.0f} MiB, Nova's streaming "
             f"{payload['streaming_growth_8m_over_2m_mib']:.0f} MiB; growth beyond the floor: "
             f"{payload['peak_growth_8m_over_2m_beyond_floor']:.3f}" if floor_growth is not None else "")
          + f"; load average before {payload['load_average_before']} -> {path}")


if __name__ == "__main__":
    main()
