"""Prep ahead of training, three ways: sequential, pipelined in-process (`nova run`), and the pod's layout.

A universe of 8 synthetic symbols of long 5-minute series, tuned on rolling windows of their most
recent bars: features are built over the whole history (the indicators need it), each trial sees the
last `--train-size` bars of each fold, so the two stages cost about the same, which is where
overlapping them matters. Each symbol's study runs `--trials` trials of fixed parameters (a
one-choice search space, no pruner), so every way does the same work.

  sequential   in this process: build a symbol, tune it, next (measures the two stages)
  in-process   in this process: `run_worker` over `prefetched` (what `nova-trainer tune` without
               --shards and `nova run` do): the next symbols are built on a thread meanwhile
  pod layout   the pod's two containers as two processes with the real commands, markers and env:
               `nova-trainer prep --linger --out F` and `nova-trainer tune --shards F`, each with
               NOVA_CPUS=1 (what the Job sets from each container's CPU, see builders.py); then
               each command alone (prep with nothing holding it back, tune on the finished
               shards) to measure the pod's stages with their process start-up
  real pod     (--real-pod) the same two commands as two containers of one pod on the real node
               (kubelet, containerd, Nova's trainer image; bench/_real_pod.py): prep a native
               sidecar, each container limited to one CPU, $NOVA_CPUS from its own limit; the
               stages are each command alone in a pod of its own

Each process runs in its own session (setsid), so with the kernel's autogroup scheduling it has its
own CPU share on a loaded machine, as each container of a pod has its own cgroup (cpu.weight from
its request); the in-process ways share one. Both processes write a timeline ($NOVA_TIMELINE,
nova_trainer/timeline.py); the output shows it per shard for the median pod run and sums where the
trainer waited. Targets: in-process wall <= 1.15
x max(stage), pod layout <= 1.20 x max(stage of each command alone). Every way runs `--repeats`
times in one command (interleaved); the JSON keeps every run and the medians. `--quiet-load 1.5`
first waits (up to `--quiet-wait` s) for the 1-minute load average to drop below it.

    python bench/pipeline.py [--symbols 8] [--bars 400000] [--train-size 6000] [--rounds 15] [--trials 1]
                             [--real-pod]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
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
from nova_trainer import timeline  # noqa: E402
from nova_trainer.dataset import load_symbol_data  # noqa: E402
from nova_trainer.device import resolve_device  # noqa: E402
from nova_trainer.sources import prefetched  # noqa: E402
from nova_trainer.tuning.storage import open_storage  # noqa: E402
from nova_trainer.tuning.worker import run_worker, tune_symbol  # noqa: E402

CPUS_PER_CONTAINER = "1"  # 2 cores: one for each container, as the Job's requests give them (--cpus)


def manifest(symbols: int, bars: int, rounds: int, train_size: int, trials: int, max_ahead: int = 2) -> dict:
    return {"apiVersion": "nova.dev/v1alpha1", "kind": "TrainingRun", "metadata": {"name": "pipeline"},
            "spec": {
                "data": {"source": "synthetic", "symbols": [f"SYM{i}" for i in range(symbols)],
                         "bars": bars, "interval": "5m", "seed": 1},
                "validation": {"walkForward": {"folds": 3, "testSize": train_size // 4, "gap": 1,
                                               "minTrainSize": train_size, "maxTrainSize": train_size}},
                "model": {"device": "cpu", "numBoostRound": rounds, "earlyStoppingRounds": None},
                "tuning": {"trials": trials, "sampler": {"type": "random", "seed": 1}, "pruner": {"type": "none"},
                           "searchSpace": {"max_depth": {"type": "categorical", "choices": [6]},
                                           "eta": {"type": "categorical", "choices": [0.1]}}},
                "prep": {"maxAhead": max_ahead, "deleteAfterUse": True},
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


def _storage(folder: Path):
    return open_storage(f"sqlite:///{folder / 'optuna.db'}", 10, 30)


def sequential(run, folder: Path) -> tuple[float, list[float], list[float]]:
    storage, device = _storage(folder), resolve_device("cpu")
    prep_s, train_s = [], []
    t0 = time.perf_counter()
    for symbol in run.spec.data.symbols:
        t = time.perf_counter()
        data = load_symbol_data(run.spec, symbol)
        prep_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        tune_symbol(run, data, storage, 0, device)
        train_s.append(time.perf_counter() - t)
    return time.perf_counter() - t0, prep_s, train_s


def in_process(run, folder: Path) -> tuple[float, list[dict]]:
    os.environ[timeline.ENV] = str(folder / "timeline.jsonl")
    try:
        t0 = time.time()
        outcomes = run_worker(run, _storage(folder), 0, prefetched(run, run.spec.prep.max_ahead))
        wall = time.time() - t0
    finally:
        del os.environ[timeline.ENV]
    _check(outcomes, run)
    return wall, _relative(timeline.read(folder / "timeline.jsonl"), t0)


def _check(outcomes, run) -> None:
    bad = [o.symbol for o in outcomes if o.error]
    if bad or len(outcomes) != len(run.spec.data.symbols):
        raise SystemExit(f"tuning failed for {bad or 'some symbols'}; the bench measures nothing")


def _relative(events: list[dict], t0: float) -> list[dict]:
    return [{**e, "t": round(e["t"] - t0, 3)} for e in events]


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "nova_trainer.cli", "--log-level", "WARNING", *args]


def _env(line: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "NOVA_CPUS"}
    if CPUS_PER_CONTAINER != "0":
        env["NOVA_CPUS"] = CPUS_PER_CONTAINER
    return {**env, timeline.ENV: str(line)} if line else env


def pod_layout(doc: dict, folder: Path) -> tuple[float, list[dict]]:
    """Both containers at once, as the kubelet starts them (the native sidecar first)."""
    config, shards, out, line = folder / "run.yaml", folder / "features", folder / "out", folder / "timeline.jsonl"
    config.write_text(yaml.safe_dump(doc))
    t0 = time.time()
    prep = subprocess.Popen(_command("prep", "--linger", "--config", str(config), "--out", str(shards)),
                            env=_env(line), stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        trainer = subprocess.run(_command("tune", "--config", str(config), "--shards", str(shards), "--out", str(out)),
                                 env=_env(line), capture_output=True, text=True, start_new_session=True)
        wall = time.time() - t0
    finally:
        prep.send_signal(signal.SIGTERM)  # the kubelet stops the native sidecar once the trainer is done
        prep.wait(timeout=60)
    if trainer.returncode != 0 or "skipped" in trainer.stdout:
        raise SystemExit(f"nova-trainer tune failed ({trainer.returncode}):\n{trainer.stdout}\n{trainer.stderr}")
    return wall, _relative(timeline.read(line), t0)


def pod_stages(doc: dict, folder: Path) -> tuple[float, float]:
    """Each command alone: prep with nothing holding it back, then tune on the finished shards."""
    unbounded = {**doc, "spec": {**doc["spec"], "prep": {"maxAhead": 100, "deleteAfterUse": True}}}
    config, shards, out = folder / "run.yaml", folder / "features", folder / "out"
    config.write_text(yaml.safe_dump(unbounded))
    env = _env()
    t0 = time.time()
    subprocess.run(_command("prep", "--config", str(config), "--out", str(shards)), env=env, check=True,
                   stdout=subprocess.DEVNULL, start_new_session=True)
    prep = time.time() - t0
    t0 = time.time()
    subprocess.run(_command("tune", "--config", str(config), "--shards", str(shards), "--out", str(out)), env=env,
                   check=True, stdout=subprocess.DEVNULL, start_new_session=True)
    return prep, time.time() - t0


def summarize(events: list[dict], wall: float) -> dict:
    """Where the trainer's time went: its start, waits for shards, loading them, training, the end."""
    at = {(e["who"], e["symbol"], e["event"]): e for e in events}
    symbols = [e["symbol"] for e in events if e["who"] == "trainer" and e["event"] == "train_start"]
    trainer_up = next((e["t"] for e in events if e["who"] == "trainer" and e["event"] == "process"), 0.0)
    prep_up = next((e["t"] for e in events if e["who"] == "prep" and e["event"] == "process"), 0.0)
    asked, waits, loads, trains, lags = trainer_up, 0.0, 0.0, 0.0, []
    for s in symbols:
        noticed = at.get(("trainer", s, "noticed"), at[("trainer", s, "train_start")])["t"]
        loaded = at.get(("trainer", s, "loaded"), at[("trainer", s, "train_start")])["t"]
        end = at[("trainer", s, "train_end")]["t"]
        waits += max(0.0, noticed - asked)
        if ("prep", s, "ready") in at and at[("prep", s, "ready")]["t"] > asked:  # it was waiting: poll latency
            lags.append(noticed - at[("prep", s, "ready")]["t"])
        loads += loaded - noticed
        trains += end - at[("trainer", s, "train_start")]["t"]
        asked = end
    ready = [at[("prep", s, "ready")]["t"] for s in symbols if ("prep", s, "ready") in at]
    return {
        "prep_process_up_s": prep_up, "trainer_process_up_s": trainer_up,
        "first_train_start_s": at[("trainer", symbols[0], "train_start")]["t"] if symbols else None,
        "last_prep_ready_s": max(ready) if ready else None,
        "trainer_waiting_s": round(waits, 3), "trainer_loading_s": round(loads, 3),
        "trainer_training_s": round(trains, 3), "after_last_train_s": round(wall - asked, 3),
        "marker_notice_lag_max_s": round(max(lags), 3) if lags else None,
        "prep_held_back_s": round(sum(e.get("s", 0.0) for e in events if e["event"] == "held"), 3),
    }


def per_shard(events: list[dict]) -> list[list]:
    at = {(e["who"], e["symbol"], e["event"]): e["t"] for e in events}
    symbols = sorted({e["symbol"] for e in events if e["symbol"]}, key=lambda s: int(s[3:]) if s[3:].isdigit() else s)
    cols = [("prep", "start"), ("prep", "built"), ("prep", "written"), ("prep", "ready"), ("trainer", "noticed"),
            ("trainer", "loaded"), ("trainer", "train_start"), ("trainer", "train_end")]
    return [[s, *[at.get((w, s, e), "") for w, e in cols]] for s in symbols]


def real_pods(doc: dict, repeats: int) -> list[dict]:
    """The pod's layout `repeats` times as one real pod (bench/_real_pod.py), after the process runs."""
    from _real_pod import real_node, run_real_pod

    out = []
    with real_node() as (cp, n):
        for i in range(repeats):
            r = run_real_pod(cp, n, doc)
            r["events"] = _relative(r["events"], r.pop("t0"))
            r["timeline"] = summarize(r["events"], r["real_pod_s"])
            out.append(r)
            print(f"real pod {i + 1}: {r['wall_over_max_stage_real_pod']:.3f} (pod {r['real_pod_s']:.1f} s, "
                  f"prep alone {r['real_pod_prep_alone_s']:.1f} s, tune alone {r['real_pod_tune_alone_s']:.1f} s)",
                  flush=True)
    return out


def wait_for_quiet(limit: float, patience: float) -> float:
    """Poll the 1-minute load average until it drops below `limit` (or `patience` runs out)."""
    t0 = time.time()
    while os.getloadavg()[0] >= limit and time.time() - t0 < patience:
        time.sleep(10)
    return time.time() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--symbols", type=int, default=8)
    parser.add_argument("--bars", type=int, default=400_000)
    parser.add_argument("--train-size", type=int, default=6_000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--trials", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quiet-load", type=float, help="wait for the 1-minute load average to drop below this")
    parser.add_argument("--quiet-wait", type=float, default=1200)
    parser.add_argument("--cpus", default="1", help="$NOVA_CPUS of each process; 0: unset (all "
                        "cores, as before issue 19)")
    parser.add_argument("--real-pod", action="store_true", help="also the pod's layout as one real pod on the "
                        "real node (tests/cluster: kubelet, containerd, Nova's trainer image), --repeats times")
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/results alone")
    parser.add_argument("--result", default="pipeline", help="bench/results/<RESULT>.json")
    args = parser.parse_args()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    global CPUS_PER_CONTAINER
    CPUS_PER_CONTAINER = args.cpus
    doc = manifest(args.symbols, args.bars, args.rounds, args.train_size, args.trials)
    run = resolve(parse_run(doc))
    waited = wait_for_quiet(args.quiet_load, args.quiet_wait) if args.quiet_load else 0.0
    env = _env()  # the in-process trainer: one core, prep's thread the other
    os.environ.clear()
    os.environ.update(env)
    runs = []
    for i in range(args.repeats):
        r: dict = {"load_before": os.getloadavg()}
        with tempfile.TemporaryDirectory() as d:
            r["sequential_s"], prep_s, train_s = sequential(run, Path(d))
        r["total_prep_s"], r["total_train_s"] = sum(prep_s), sum(train_s)
        r["max_stage_s"] = max(r["total_prep_s"], r["total_train_s"])
        with tempfile.TemporaryDirectory() as d:
            r["in_process_s"], events = in_process(run, Path(d))
        r["in_process_timeline"] = summarize(events, r["in_process_s"])
        with tempfile.TemporaryDirectory() as d:
            r["pod_s"], r["pod_events"] = pod_layout(doc, Path(d))
        r["pod_timeline"] = summarize(r["pod_events"], r["pod_s"])
        with tempfile.TemporaryDirectory() as d:
            r["pod_prep_alone_s"], r["pod_tune_alone_s"] = pod_stages(doc, Path(d))
        r["pod_max_stage_s"] = max(r["pod_prep_alone_s"], r["pod_tune_alone_s"])
        r["wall_over_max_stage"] = r["in_process_s"] / r["max_stage_s"]
        r["wall_over_max_stage_sidecar"] = r["pod_s"] / r["pod_max_stage_s"]
        r["sidecar_wall_over_in_process_max_stage"] = r["pod_s"] / r["max_stage_s"]
        r["load_after"] = os.getloadavg()
        runs.append(r)
        print(f"run {i + 1}: in-process {r['wall_over_max_stage']:.3f}, pod layout "
              f"{r['wall_over_max_stage_sidecar']:.3f} (load {r['load_before'][0]:.2f} -> {r['load_after'][0]:.2f})",
              flush=True)

    pods = real_pods(doc, args.repeats) if args.real_pod else []

    def med(key: str) -> float:
        return statistics.median(r[key] for r in runs)

    with tempfile.TemporaryDirectory() as d:
        formats = shard_formats(load_symbol_data(run.spec, run.spec.data.symbols[0]), Path(d))
    median_pod = sorted(runs, key=lambda r: r["wall_over_max_stage_sidecar"])[len(runs) // 2]
    payload = {
        "symbols": args.symbols, "bars": args.bars, "rounds": args.rounds, "train_size": args.train_size,
        "trials": args.trials, "repeats": args.repeats, "cpus_per_container": int(CPUS_PER_CONTAINER),
        "waited_for_quiet_s": round(waited, 1), "loadavg": [r["load_before"] for r in runs],
        **{k: med(k) for k in ("total_prep_s", "total_train_s", "max_stage_s", "sequential_s", "in_process_s",
                               "pod_s", "pod_prep_alone_s", "pod_tune_alone_s", "pod_max_stage_s",
                               "wall_over_max_stage", "wall_over_max_stage_sidecar",
                               "sidecar_wall_over_in_process_max_stage")},
        "shard_formats": formats,
        "timeline_summary": {"in_process": median_pod["in_process_timeline"], "pod": median_pod["pod_timeline"]},
        "pod_timeline_median_run": median_pod["pod_events"],
        "runs": [{k: v for k, v in r.items() if k != "pod_events"} for r in runs],
    }
    if pods:
        median_real = sorted(pods, key=lambda r: r["wall_over_max_stage_real_pod"])[len(pods) // 2]
        payload |= {k: statistics.median(r[k] for r in pods) for k in (
            "real_pod_s", "real_pod_prep_alone_s", "real_pod_tune_alone_s", "real_pod_max_stage_s",
            "wall_over_max_stage_real_pod")}
        from _real_pod import CPU_LIMIT

        payload["real_pod_cpu_limit_per_container"] = CPU_LIMIT
        payload["timeline_summary"]["real_pod"] = median_real["timeline"]
        payload["real_pod_runs"] = [{k: v for k, v in r.items() if k != "events"} for r in pods]
    s = payload
    print(table(["way", "wall (s)", "wall / sum of stages", "wall / max stage"], [
        ["sequential", s["sequential_s"], s["sequential_s"] / (s["total_prep_s"] + s["total_train_s"]),
         s["sequential_s"] / s["max_stage_s"]],
        ["pipelined in-process", s["in_process_s"], s["in_process_s"] / (s["total_prep_s"] + s["total_train_s"]),
         s["wall_over_max_stage"]],
        ["pod layout (prep --linger + tune --shards)", s["pod_s"],
         s["pod_s"] / (s["pod_prep_alone_s"] + s["pod_tune_alone_s"]), s["wall_over_max_stage_sidecar"]],
        *([["real pod on the real node (native sidecar + trainer)", s["real_pod_s"],
            s["real_pod_s"] / (s["real_pod_prep_alone_s"] + s["real_pod_tune_alone_s"]),
            s["wall_over_max_stage_real_pod"]]] if pods else []),
    ]))
    print(f"\nstages in-process: prep {s['total_prep_s']:.1f}s, train {s['total_train_s']:.1f}s; each command alone: "
          f"prep {s['pod_prep_alone_s']:.1f}s, tune {s['pod_tune_alone_s']:.1f}s; pod wall over the in-process max "
          f"stage {s['sidecar_wall_over_in_process_max_stage']:.3f}")
    print("\npod layout, median run (seconds since launch):")
    print(table(["symbol", "prep start", "built", "written", "ready", "noticed", "loaded", "train start", "train end"],
                per_shard(median_pod["pod_events"])))
    print()
    print(table(["timeline", *payload["timeline_summary"]["pod"]],
                [[way, *v.values()] for way, v in payload["timeline_summary"].items()]))
    print()
    print(table(["shard format", "MB", "write (s)", "read (s)"], [
        [k, round(v["bytes"] / 1e6, 1), v["write_s"], v["read_s"]] for k, v in formats.items()]))
    if not args.no_write:
        print(f"\n-> {write_result(args.result, payload)}")


if __name__ == "__main__":
    main()
