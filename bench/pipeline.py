"""Prep ahead of training: sequential vs pipelined in-process vs prep as a separate process.

A universe of 8 synthetic symbols of long 5-minute series, trained on rolling windows of their
most recent bars: features are built over the whole history (the indicators need it), the model
sees the last `--train-size` bars of each fold, so the two stages cost about the same, which is
where overlapping them matters. Training is the walk-forward evaluation of fixed parameters with
one XGBoost thread, so the second core is free for prep, as the CPU sidecar has its own CPU in a
pod. Reports each way's wall time against the sum and the max of the two stages (measured in the
sequential run). Target: pipelined wall <= 1.15 x max(total prep, total train).

    python bench/pipeline.py [--symbols 8] [--bars 400000] [--train-size 6000] [--rounds 15]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table, write_result  # noqa: E402

from nova.manifest import parse_run  # noqa: E402
from nova.spec import resolve  # noqa: E402
from nova_trainer.dataset import load_symbol_data  # noqa: E402
from nova_trainer.device import resolve_device  # noqa: E402
from nova_trainer.prep import consume_shards  # noqa: E402
from nova_trainer.sources import prefetched  # noqa: E402
from nova_trainer.train import evaluate  # noqa: E402

PARAMS = {"max_depth": 6, "eta": 0.1}


def manifest(symbols: int, bars: int, rounds: int, train_size: int) -> dict:
    return {"apiVersion": "nova.dev/v1alpha1", "kind": "TrainingRun", "metadata": {"name": "pipeline"},
            "spec": {
                "data": {"source": "synthetic", "symbols": [f"SYM{i}" for i in range(symbols)],
                         "bars": bars, "interval": "5m", "seed": 1},
                "validation": {"walkForward": {"folds": 3, "testSize": train_size // 4, "gap": 1,
                                               "minTrainSize": train_size, "maxTrainSize": train_size}},
                "model": {"numBoostRound": rounds, "earlyStoppingRounds": None, "nthread": 1},
                "prep": {"maxAhead": 2, "deleteAfterUse": True},
                "gpu": {"count": 0}}}


def shard_formats(data, folder: Path) -> dict:
    """Write and read one symbol's shard as Parquet (snappy) and as Arrow IPC (Feather, no
    compression): bytes on disk and seconds to load it back into the trainer's frame."""
    import pandas as pd

    from nova_trainer.dataset import to_frame

    frame = to_frame(data)
    out = {}
    for name, write, read in (
        ("parquet", lambda p: frame.to_parquet(p, compression="snappy"), pd.read_parquet),
        ("feather", lambda p: frame.reset_index().to_feather(p, compression="uncompressed"), pd.read_feather),
    ):
        path = folder / f"shard.{name}"
        t = time.perf_counter()
        write(path)
        written = time.perf_counter() - t
        best = min(_timed(lambda read=read, path=path: read(path)) for _ in range(3))
        out[name] = {"bytes": path.stat().st_size, "write_s": written, "read_s": best}
    return out


def _timed(action) -> float:
    t = time.perf_counter()
    action()
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--symbols", type=int, default=8)
    parser.add_argument("--bars", type=int, default=400_000)
    parser.add_argument("--train-size", type=int, default=6_000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    doc = manifest(args.symbols, args.bars, args.rounds, args.train_size)
    run = resolve(parse_run(doc))
    device = resolve_device("cpu")

    # 1. Sequential: prep a symbol, train it, next.
    prep_s, train_s = [], []
    t0 = time.perf_counter()
    for symbol in run.spec.data.symbols:
        t = time.perf_counter()
        data = load_symbol_data(run.spec, symbol)
        prep_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        evaluate(data, run.spec, PARAMS, device)
        train_s.append(time.perf_counter() - t)
    sequential = time.perf_counter() - t0
    total_prep, total_train = sum(prep_s), sum(train_s)

    # 2. Pipelined in-process: the next symbols are built while the current one trains.
    t0 = time.perf_counter()
    for _, data in prefetched(run, run.spec.prep.max_ahead):
        evaluate(data, run.spec, PARAMS, device)
    pipelined = time.perf_counter() - t0

    # 3. Prep as its own process writing shards to a shared folder (the pod's sidecar layout).
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "run.yaml"
        config.write_text(yaml.safe_dump(doc))
        shards = Path(folder) / "features"
        t0 = time.perf_counter()
        prep = subprocess.Popen([sys.executable, "-m", "nova_trainer.cli", "--log-level", "WARNING", "prep",
                                 "--config", str(config), "--out", str(shards)])
        for _, data in consume_shards(run, shards):
            evaluate(data, run.spec, PARAMS, device)
        prep.wait()
        sidecar = time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as folder:
        formats = shard_formats(load_symbol_data(run.spec, run.spec.data.symbols[0]), Path(folder))

    longest = max(total_prep, total_train)
    payload = {
        "symbols": args.symbols, "bars": args.bars, "rounds": args.rounds, "train_size": args.train_size,
        "total_prep_s": total_prep, "total_train_s": total_train,
        "sum_of_stages_s": total_prep + total_train, "max_stage_s": longest,
        "sequential_s": sequential, "pipelined_in_process_s": pipelined, "prep_process_shared_folder_s": sidecar,
        "wall_over_max_stage": pipelined / longest,
        "sidecar_wall_over_max_stage": sidecar / longest,
        "shard_formats": formats,
    }
    path = write_result("pipeline", payload)
    print(table(["way", "wall (s)", "wall / sum of stages", "wall / max stage"], [
        ["sequential", sequential, sequential / (total_prep + total_train), sequential / longest],
        ["pipelined in-process", pipelined, pipelined / (total_prep + total_train), pipelined / longest],
        ["prep process + shared folder", sidecar, sidecar / (total_prep + total_train), sidecar / longest],
    ]))
    print()
    print(table(["shard format", "MB", "write (s)", "read (s)"], [
        [k, round(v["bytes"] / 1e6, 1), v["write_s"], v["read_s"]] for k, v in formats.items()]))
    print(f"\nstages: prep {total_prep:.1f}s, train {total_train:.1f}s -> {path}")


if __name__ == "__main__":
    main()
