"""The GPU path and its evidence: CPU hist vs CUDA hist, DMatrix vs QuantileDMatrix on the device,
the RMM pool, gradient-based sampling and a pruned study, measured side by side in one run.

One seeded synthetic dense float32 matrix (default 10,000,000 x 100 with a GPU; 1,000,000 x 100 on
a CPU-only machine, which says so) is written once; every measurement runs in its own fresh Python
process so that no allocator, pool or CUDA context is shared between the things compared:

1. training time, CPU `hist` vs CUDA `hist`: QuantileDMatrix from the same host array, same params,
   `--rounds` rounds; a 1-round warm-up first (CUDA context, kernels) is not timed;
2. peak memory, DMatrix vs QuantileDMatrix, build + `--mem-rounds` rounds: on the GPU from the device
   (NVML used memory sampled every 5 ms in a thread, minus the reading before the process touched
   CUDA; input as a cupy array on the device), on CPU the process's peak RSS (labelled as such);
3. allocation-heavy loop, as tuning does: `--loop-trainings` small trainings on shifting windows of
   `--loop-rows` rows, each with its own QuantileDMatrix; on the GPU with XGBoost's default allocator,
   with XGBoost's CUDA async pool, and with Nova's RMM pool (`nova_trainer.device.init_rmm`, cupy
   routed through RMM); the JSON records what XGBoost itself allocated through (`build_info`);
4. gradient-based sampling at subsample 0.2 vs uniform at 1.0: time, peak memory, held-out AUC, on
   CPU (where XGBoost accepts it, as it does with hist) and on the GPU;
5. a 20-trial Optuna study with the median pruner (synthetic TrainingRun, Nova's own `tune_symbol`)
   on CPU and on CUDA.

Rows that need a GPU say "not measured" in the table and null in the JSON when there is none: never
an estimate. A measurement that fails records its error instead of a number. `--budget-s` (default
570) stops starting new measurements once spent, and says which were skipped.

    python bench/gpu.py [--rows N] [--cpu-rows N] [--rounds 50] [--budget-s 570]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table, write_result  # noqa: E402

COLS = 100
SEED = 0
PARAMS = {"tree_method": "hist", "max_depth": 6, "max_bin": 256, "eta": 0.1,
          "objective": "binary:logistic", "verbosity": 0}
NOT_MEASURED = "not measured"
MiB = 2**20


# ----------------------------------------------------------------------------- data

def make_data(folder: Path, rows: int) -> dict:
    """X (rows x 100 float32), y: a noisy linear rule, seeded; the last 10% is held out for AUC."""
    rng = np.random.default_rng(SEED)
    X = rng.standard_normal((rows, COLS), dtype=np.float32)
    weights = rng.standard_normal(COLS).astype(np.float32)
    y = ((X @ weights + rng.standard_normal(rows, dtype=np.float32) * 4) > 0).astype(np.float32)
    np.save(folder / "X.npy", X)
    np.save(folder / "y.npy", y)
    return {"rows": rows, "cols": COLS, "dtype": "float32", "seed": SEED, "held_out": 0.1,
            "positive_rate": float(y.mean())}


def load(folder: str, rows: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(X_train, y_train, X_valid, y_valid) from the first `rows` rows (all when None)."""
    X = np.load(Path(folder) / "X.npy", mmap_mode="r")
    y = np.load(Path(folder) / "y.npy", mmap_mode="r")
    n = len(y) if rows is None else min(rows, len(y))
    cut = int(n * 0.9)
    return (np.ascontiguousarray(X[:cut]), np.ascontiguousarray(y[:cut]),
            np.ascontiguousarray(X[cut:n]), np.ascontiguousarray(y[cut:n]))


# ----------------------------------------------------------------------------- device facts

def device_name() -> str:
    from nova_trainer.device import gpu_count

    if gpu_count() == 0:
        return "cpu only: no CUDA device"
    try:
        import pynvml

        pynvml.nvmlInit()
        name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(0))
        return name.decode() if isinstance(name, bytes) else str(name)
    except Exception:  # noqa: BLE001 - fall back to nvidia-smi
        pass
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30, check=True)
        return out.stdout.strip().splitlines()[0]
    except Exception as exc:  # noqa: BLE001
        return f"CUDA device (name unreadable: {type(exc).__name__})"


class DevicePeak:
    """Peak used memory of GPU 0 read from the device (NVML, else nvidia-smi), sampled in a thread.

    `baseline` is read on entry, before the caller touches CUDA, so `peak_mib` is what this process
    added (other processes' use on the same GPU would show too: run on an idle GPU)."""

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            self._read = lambda: pynvml.nvmlDeviceGetMemoryInfo(handle).used
            self.source = "NVML (nvidia-ml-py) device used memory"
        except Exception:  # noqa: BLE001
            self.interval_s = max(interval_s, 0.05)
            self._read = self._smi
            self.source = "nvidia-smi memory.used"
        self.baseline = self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _smi() -> int:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits",
                              "-i", "0"], capture_output=True, text=True, timeout=10, check=True)
        return int(out.stdout.split()[0]) * MiB

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._read())
            self.samples += 1
            self._stop.wait(self.interval_s)

    def __enter__(self) -> DevicePeak:
        self.baseline = self.peak = self._read()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._read())

    @property
    def peak_mib(self) -> float:
        return (self.peak - self.baseline) / MiB

    def report(self) -> dict:
        return {"peak_device_mib": self.peak_mib, "baseline_device_mib": self.baseline / MiB,
                "memory_source": self.source, "samples": self.samples}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def auc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p))


def to_host(a) -> np.ndarray:
    return a.get() if hasattr(a, "get") else np.asarray(a)


def warm_up(device: str, nthread: int) -> None:
    """One tiny training so that CUDA context creation and kernel loading are not timed."""
    import xgboost as xgb

    rng = np.random.default_rng(1)
    X, y = rng.random((1000, COLS), dtype=np.float32), rng.integers(0, 2, 1000)
    xgb.train({**PARAMS, "device": device, "nthread": nthread}, xgb.QuantileDMatrix(X, y), 1)


# ----------------------------------------------------------------------------- children

def child_train(a: dict) -> dict:
    """CPU vs CUDA hist: QuantileDMatrix from the same host array, timed build and training."""
    import xgboost as xgb

    params = {**PARAMS, "device": a["device"], "nthread": a["nthread"]}
    X, y, Xv, yv = load(a["data"], a["rows"])
    warm_up(a["device"], a["nthread"])
    t0 = time.perf_counter()
    dtrain = xgb.QuantileDMatrix(X, y, max_bin=PARAMS["max_bin"], nthread=a["nthread"])
    t1 = time.perf_counter()
    booster = xgb.train(params, dtrain, a["rounds"])
    booster.num_boosted_rounds()
    t2 = time.perf_counter()
    booster.set_param({"device": "cpu"})  # predict on the host input without a device copy
    return {"device": a["device"], "rows_train": len(y), "build_s": t1 - t0, "train_s": t2 - t1,
            "rounds": booster.num_boosted_rounds(), "auc": auc(yv, booster.inplace_predict(Xv))}


def child_memory(a: dict) -> dict:
    """Peak memory of build + training for one matrix kind; on cuda from the device, input on it."""
    import xgboost as xgb

    make = (lambda X, y: xgb.DMatrix(X, y)) if a["matrix"] == "DMatrix" else \
        (lambda X, y: xgb.QuantileDMatrix(X, y, max_bin=PARAMS["max_bin"]))
    params = {**PARAMS, "device": a["device"], "nthread": a["nthread"]}
    X, y, _, _ = load(a["data"], a["rows"])
    if a["device"] == "cpu":
        t0 = time.perf_counter()
        booster = xgb.train(params, make(X, y), a["rounds"])
        booster.num_boosted_rounds()
        return {"matrix": a["matrix"], "rows_train": len(y), "seconds": time.perf_counter() - t0,
                "peak_rss_mib": peak_rss_mib(), "input_mib": X.nbytes / MiB,
                "memory_source": "process peak RSS (getrusage), includes the host input"}
    with DevicePeak() as peak:
        import cupy as cp

        Xd, yd = cp.asarray(X), cp.asarray(y)
        del X, y
        t0 = time.perf_counter()
        booster = xgb.train(params, make(Xd, yd), a["rounds"])
        booster.num_boosted_rounds()
        cp.cuda.runtime.deviceSynchronize()
        seconds = time.perf_counter() - t0
    return {"matrix": a["matrix"], "rows_train": int(yd.size), "seconds": seconds,
            "input_mib": Xd.nbytes / MiB, "input": "cupy array on the device", **peak.report()}


def child_alloc(a: dict) -> dict:
    """Many small trainings on shifting windows, each with its own matrix (as tuning's folds do)."""
    import xgboost as xgb

    device, allocator = a["device"], a["allocator"]
    status = "host memory (CPU)"
    xp = np
    ctx = DevicePeak() if device == "cuda" else None
    if ctx:
        ctx.__enter__()
    if allocator == "cuda_async_pool":
        xgb.set_config(use_cuda_async_pool=True)
        status = f"XGBoost CUDA async pool (use_cuda_async_pool={xgb.get_config()['use_cuda_async_pool']})"
    elif allocator == "rmm_pool":
        from nova_trainer.device import init_rmm

        status = init_rmm(True, "cuda", a["rmm_initial"], a["rmm_maximum"])
        try:
            import cupy as cp
            from rmm.allocators.cupy import rmm_cupy_allocator

            cp.cuda.set_allocator(rmm_cupy_allocator)
            status += "; cupy allocates through RMM"
        except Exception as exc:  # noqa: BLE001
            status += f"; cupy not routed through RMM ({type(exc).__name__}: {exc})"
    elif allocator == "default" and device == "cuda":
        status = "XGBoost default CUDA allocator, cupy default pool"
    need = a["rows"] + a["stride"] * a["trainings"]
    X, y, _, _ = load(a["data"], int(need / 0.9) + 1)
    if device == "cuda":
        import cupy as xp  # noqa: F811

        X, y = xp.asarray(X), xp.asarray(y)
    params = {**PARAMS, "device": device, "nthread": a["nthread"]}

    def one(i: int) -> None:
        lo = (i * a["stride"]) % max(1, len(y) - a["rows"])
        Xw, yw = X[lo:lo + a["rows"]].copy(), y[lo:lo + a["rows"]].copy()  # a fresh allocation each time
        booster = xgb.train(params, xgb.QuantileDMatrix(Xw, yw, max_bin=PARAMS["max_bin"]), a["rounds"])
        to_host(booster.inplace_predict(Xw[:1000]))

    one(0)  # warm-up, not timed
    t0 = time.perf_counter()
    for i in range(1, a["trainings"] + 1):
        one(i)
    seconds = time.perf_counter() - t0
    out = {"allocator": allocator, "device": device, "trainings": a["trainings"], "rows_each": a["rows"],
           "rounds_each": a["rounds"], "seconds": seconds, "ms_per_training": 1000 * seconds / a["trainings"],
           "status": status, "xgboost_use_rmm_build": bool(xgb.build_info().get("USE_RMM")),
           "xgboost_config": xgb.get_config()}
    if ctx:
        ctx.__exit__(None, None, None)
        out.update(ctx.report())
    else:
        out["peak_rss_mib"] = peak_rss_mib()
    return out


def child_sampling(a: dict) -> dict:
    """Uniform sampling at subsample 1.0 vs gradient-based at 0.2: time, peak memory, held-out AUC."""
    import xgboost as xgb

    params = {**PARAMS, "device": a["device"], "nthread": a["nthread"],
              "sampling_method": a["method"], "subsample": a["subsample"]}
    X, y, Xv, yv = load(a["data"], a["rows"])
    base = {"method": a["method"], "subsample": a["subsample"], "rows_train": len(y), "rounds": a["rounds"]}
    if a["device"] == "cpu":
        t0 = time.perf_counter()
        try:
            booster = xgb.train(params, xgb.QuantileDMatrix(X, y, max_bin=PARAMS["max_bin"]), a["rounds"])
        except xgb.core.XGBoostError as exc:
            return {**base, "refused": str(exc).splitlines()[0]}
        seconds = time.perf_counter() - t0
        return {**base, "seconds": seconds, "auc": auc(yv, booster.inplace_predict(Xv)),
                "peak_rss_mib": peak_rss_mib(), "memory_source": "process peak RSS (getrusage)"}
    with DevicePeak() as peak:
        import cupy as cp

        Xd, yd = cp.asarray(X), cp.asarray(y)
        del X, y
        warm_up("cuda", a["nthread"])
        t0 = time.perf_counter()
        try:
            booster = xgb.train(params, xgb.QuantileDMatrix(Xd, yd, max_bin=PARAMS["max_bin"]), a["rounds"])
        except xgb.core.XGBoostError as exc:
            return {**base, "refused": str(exc).splitlines()[0]}
        cp.cuda.runtime.deviceSynchronize()
        seconds = time.perf_counter() - t0
        pred = to_host(booster.inplace_predict(cp.asarray(Xv)))
    return {**base, "seconds": seconds, "auc": auc(yv, pred), "input": "cupy array on the device",
            **peak.report()}


def child_study(a: dict) -> dict:
    """A pruned study on a synthetic TrainingRun with Nova's own worker loop."""
    import optuna

    from nova.manifest import parse_run
    from nova.spec import resolve
    from nova_trainer.dataset import load_symbol_data
    from nova_trainer.device import init_rmm, resolve_device
    from nova_trainer.tuning.storage import open_storage
    from nova_trainer.tuning.worker import tune_symbol

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    manifest = {
        "apiVersion": "nova.dev/v1alpha1", "kind": "TrainingRun", "metadata": {"name": f"gpu-{a['device']}"},
        "spec": {
            "data": {"source": "synthetic", "symbols": ["BENCH"], "bars": a["bars"], "seed": 5},
            "features": {"set": "minimal"},
            "validation": {"walkForward": {"folds": 3, "testSize": a["test_size"], "gap": 1,
                                           "minTrainSize": a["bars"] // 3}},
            "model": {"device": a["device"], "numBoostRound": a["rounds"], "earlyStoppingRounds": None},
            "tuning": {"trials": a["trials"], "metric": "auc", "sampler": {"type": "tpe", "seed": 1},
                       "pruner": {"type": "median", "warmupSteps": 10, "startupTrials": 5}},
            "gpu": {"count": 1 if a["device"] == "cuda" else 0}}}
    run = resolve(parse_run(manifest))
    device = resolve_device(run.spec.model.device)
    rmm = init_rmm(run.spec.gpu.rmm.enabled, device.device, run.spec.gpu.rmm.initial_pool_size,
                   run.spec.gpu.rmm.maximum_pool_size)
    data = load_symbol_data(run.spec, "BENCH")
    storage = open_storage(f"sqlite:///{Path(a['folder']) / (a['device'] + '.db')}", 10, 30)
    if device.device == "cuda":
        warm_up("cuda", os.cpu_count() or 1)
    t0 = time.perf_counter()
    outcome = tune_symbol(run, data, storage, 0, device)
    wall = time.perf_counter() - t0
    study = optuna.load_study(study_name=run.study_name("BENCH"), storage=storage)
    return {"requested": a["device"], "device": device.device, "reason": device.reason, "rmm": rmm,
            "bars": a["bars"], "rows": len(data.y), "features": data.X.shape[1], "trials": len(study.trials),
            "pruned": outcome.progress.pruned, "rounds": sum(t.user_attrs.get("rounds", 0) for t in study.trials),
            "wall_s": wall, "best_value": outcome.progress.best_value}


CHILDREN = {"train": child_train, "memory": child_memory, "alloc": child_alloc,
            "sampling": child_sampling, "study": child_study}


# ----------------------------------------------------------------------------- parent

class Runner:
    """Runs each measurement in a fresh process, within the overall time budget."""

    def __init__(self, budget_s: float) -> None:
        self.t0 = time.monotonic()
        self.budget_s = budget_s
        self.log: list[dict] = []

    def left(self) -> float:
        return self.budget_s - (time.monotonic() - self.t0)

    def __call__(self, kind: str, **args) -> dict:
        label = f"{kind} {json.dumps({k: v for k, v in args.items() if k not in ('data', 'folder')})}"
        if self.left() < 5:
            result = {"skipped": f"{NOT_MEASURED}: --budget-s spent before this measurement"}
        else:
            start = time.monotonic()
            try:
                out = subprocess.run([sys.executable, __file__, "--child", kind, "--args", json.dumps(args)],
                                     capture_output=True, text=True, timeout=self.left())
                lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
                if out.returncode == 0 and lines:
                    result = json.loads(lines[-1])
                else:
                    tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
                    result = {"error": f"exit {out.returncode}: {tail}"}
            except subprocess.TimeoutExpired:
                result = {"error": f"killed at the --budget-s limit after {time.monotonic() - start:.0f} s"}
            result["wall_s_process"] = time.monotonic() - start
        print(f"[{time.monotonic() - self.t0:6.1f}s] {label} -> "
              f"{json.dumps({k: v for k, v in result.items() if k != 'xgboost_config'})}", flush=True)
        self.log.append({"kind": kind, **args, "result": result})
        return result


def cell(result: dict | None, key: str, fmt: str = "{:,.2f}", suffix: str = "") -> str:
    """A table cell: the number, or why there is none (never an estimate)."""
    if result is None:
        return NOT_MEASURED + ": no CUDA device"
    for why in ("skipped", "error", "refused"):
        if why in result:
            return f"{'refused by XGBoost' if why == 'refused' else why}: {result[why]}".replace("|", "/")
    value = result.get(key)
    return NOT_MEASURED if value is None else fmt.format(value) + suffix


def ratio(a: dict | None, b: dict | None, key: str) -> float | None:
    """a[key] / b[key] when both were measured, else None."""
    if not a or not b or a.get(key) is None or b.get(key) in (None, 0):
        return None
    return a[key] / b[key]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, help="rows of the shared matrix (default 10,000,000 with a "
                        "GPU, 1,000,000 without)")
    parser.add_argument("--cpu-rows", type=int, help="rows for the CPU-only memory and sampling rows "
                        "(default: --rows without a GPU, min(--rows, 2,000,000) with one, to fit 10 min)")
    parser.add_argument("--rounds", type=int, default=50, help="boosting rounds of the timed trainings")
    parser.add_argument("--mem-rounds", type=int, default=20, help="rounds in the memory measurements")
    parser.add_argument("--loop-trainings", type=int, default=100)
    parser.add_argument("--loop-rows", type=int, default=20_000)
    parser.add_argument("--loop-rounds", type=int, default=10)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--study-rounds", type=int, default=100, help="numBoostRound of the study's trials")
    parser.add_argument("--study-bars", type=int, help="bars of the study's synthetic symbol "
                        "(default 20,000 with a GPU, 1,600 without)")
    parser.add_argument("--budget-s", type=float, default=570, help="start no measurement after this")
    parser.add_argument("--no-write", action="store_true", help="print, do not write bench/results/gpu.json")
    parser.add_argument("--child", choices=sorted(CHILDREN))
    parser.add_argument("--args")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(CHILDREN[args.child](json.loads(args.args))), flush=True)
        return

    import xgboost as xgb

    from nova_trainer.device import gpu_count
    from nova_trainer.train import gradient_sampling_supported

    gpu = gpu_count() > 0
    name = device_name()
    rows = args.rows or (10_000_000 if gpu else 1_000_000)
    cpu_rows = args.cpu_rows or (min(rows, 2_000_000) if gpu else rows)
    bars = args.study_bars or (20_000 if gpu else 1_600)
    nthread = os.cpu_count() or 1
    run = Runner(args.budget_s)
    load_start = os.getloadavg()
    notes = []
    if load_start[0] > nthread:
        notes.append(f"The machine was shared: load average {load_start[0]:.1f} on {nthread} CPUs at the "
                     "start, so CPU times here are inflated and noisy; compare rows of one run only.")
    if not gpu:
        notes.append(f"No CUDA device: every GPU row is '{NOT_MEASURED}' (JSON null), never estimated. "
                     f"Sizes of this CPU-only run: {rows:,} rows instead of the GPU default 10,000,000 "
                     f"(CPU-only default 1,000,000), study on {bars:,} bars; see sizes and command.")
    with tempfile.TemporaryDirectory(prefix="nova-gpu-bench-") as folder:
        t0 = time.perf_counter()
        data = make_data(Path(folder), max(rows, cpu_rows))
        data["make_s"] = time.perf_counter() - t0
        print(f"data: {data}", flush=True)
        common = {"data": folder, "nthread": nthread}

        # 1. CPU hist vs CUDA hist, same rows.
        train_cpu = run("train", device="cpu", rows=rows, rounds=args.rounds, **common)
        train_gpu = run("train", device="cuda", rows=rows, rounds=args.rounds, **common) if gpu else None

        # 2. DMatrix vs QuantileDMatrix: on the device (GPU), and peak RSS on CPU.
        mem_gpu = {m: run("memory", device="cuda", matrix=m, rows=rows, rounds=args.mem_rounds, **common)
                   for m in ("DMatrix", "QuantileDMatrix")} if gpu else {"DMatrix": None, "QuantileDMatrix": None}
        mem_cpu = {m: run("memory", device="cpu", matrix=m, rows=cpu_rows, rounds=args.mem_rounds, **common)
                   for m in ("DMatrix", "QuantileDMatrix")}

        # 3. allocation-heavy loop.
        loop = {"rows": args.loop_rows, "stride": 997, "trainings": args.loop_trainings,
                "rounds": args.loop_rounds, "rmm_initial": "8Gi", "rmm_maximum": "14Gi", **common}
        alloc_cpu = run("alloc", device="cpu", allocator="host", **loop)
        alloc_gpu = {al: run("alloc", device="cuda", allocator=al, **loop) if gpu else None
                     for al in ("default", "cuda_async_pool", "rmm_pool")}

        # 4. gradient-based sampling at 0.2 vs uniform at 1.0.
        variants = (("uniform", 1.0), ("gradient_based", 0.2))
        cpu_accepts = gradient_sampling_supported("cpu")
        samp_cpu = {m: run("sampling", device="cpu", method=m, subsample=s, rows=cpu_rows,
                           rounds=args.rounds, **common) for m, s in variants}
        samp_gpu = {m: run("sampling", device="cuda", method=m, subsample=s, rows=rows,
                           rounds=args.rounds, **common) if gpu else None for m, s in variants}

        # 5. 20-trial pruned study.
        study = {"bars": bars, "trials": args.trials, "rounds": args.study_rounds, "test_size": max(120, bars // 15),
                 "folder": folder}
        study_cpu = run("study", device="cpu", **study)
        study_gpu = run("study", device="cuda", **study) if gpu else None

    speedup = ratio(train_cpu, train_gpu, "train_s")
    mem_ratio = ratio(mem_gpu["QuantileDMatrix"], mem_gpu["DMatrix"], "peak_device_mib")
    cpu_mem_ratio = ratio(mem_cpu["QuantileDMatrix"], mem_cpu["DMatrix"], "peak_rss_mib")
    gpu_label = "GPU (cuda)" if gpu else "GPU (cuda): none here"
    r = f"{rows:,} x {COLS}"
    rc = f"{cpu_rows:,} x {COLS}"
    rows_md = [
        [f"hist training, {args.rounds} rounds, {r} (s; QuantileDMatrix build not included)",
         cell(train_cpu, "train_s"), cell(train_gpu, "train_s"), "same host array, warm-up not timed"],
        ["QuantileDMatrix build from the host array (s)", cell(train_cpu, "build_s"), cell(train_gpu, "build_s"), ""],
        ["held-out AUC of that model", cell(train_cpu, "auc", "{:.4f}"), cell(train_gpu, "auc", "{:.4f}"), ""],
        ["speedup, CPU time / CUDA time", "", NOT_MEASURED if speedup is None else f"{speedup:.1f}x", ""],
        [f"peak memory, DMatrix + {args.mem_rounds} rounds (MiB)", cell(mem_cpu["DMatrix"], "peak_rss_mib", "{:,.0f}"),
         cell(mem_gpu["DMatrix"], "peak_device_mib", "{:,.0f}"),
         f"CPU: process peak RSS at {rc}; GPU: device used memory at {r}, cupy input on the device"],
        [f"peak memory, QuantileDMatrix + {args.mem_rounds} rounds (MiB)",
         cell(mem_cpu["QuantileDMatrix"], "peak_rss_mib", "{:,.0f}"),
         cell(mem_gpu["QuantileDMatrix"], "peak_device_mib", "{:,.0f}"), "as above"],
        ["peak ratio QuantileDMatrix / DMatrix", NOT_MEASURED if cpu_mem_ratio is None else f"{cpu_mem_ratio:.2f}",
         NOT_MEASURED if mem_ratio is None else f"{mem_ratio:.2f}", "CPU ratio is of RSS, not device memory"],
    ]
    for al, label in (("default", "XGBoost default allocator"), ("cuda_async_pool", "XGBoost CUDA async pool"),
                      ("rmm_pool", "Nova RMM pool (init_rmm)")):
        rows_md.append([f"{args.loop_trainings} small trainings ({args.loop_rows:,} rows, {args.loop_rounds} "
                        f"rounds each), {label} (ms per training)",
                        cell(alloc_cpu, "ms_per_training", "{:,.1f}") if al == "default" else "n/a on CPU",
                        cell(alloc_gpu[al], "ms_per_training", "{:,.1f}"),
                        (alloc_gpu[al] or {}).get("status", "CPU: host allocator" if al == "default" else "")
                        .replace("|", "/")])
    for m, s in variants:
        label = f"{m} sampling, subsample {s}"
        rows_md.append([f"{label}: training time (s)", cell(samp_cpu[m], "seconds"), cell(samp_gpu[m], "seconds"),
                        f"CPU at {rc}, GPU at {r}; {args.rounds} rounds, build included"])
        rows_md.append([f"{label}: held-out AUC", cell(samp_cpu[m], "auc", "{:.4f}"),
                        cell(samp_gpu[m], "auc", "{:.4f}"), ""])
        rows_md.append([f"{label}: peak memory (MiB)", cell(samp_cpu[m], "peak_rss_mib", "{:,.0f}"),
                        cell(samp_gpu[m], "peak_device_mib", "{:,.0f}"), "CPU: RSS; GPU: device"])
    rows_md += [
        [f"{args.trials}-trial study, median pruner, {bars:,} bars: wall (s)", cell(study_cpu, "wall_s"),
         cell(study_gpu, "wall_s"), f"Nova tune_symbol, synthetic TrainingRun, 3 folds, <= {args.study_rounds} rounds"],
        ["  trials pruned", cell(study_cpu, "pruned", "{}"), cell(study_gpu, "pruned", "{}"), ""],
        ["  best AUC", cell(study_cpu, "best_value", "{:.4f}"), cell(study_gpu, "best_value", "{:.4f}"), ""],
    ]
    markdown = table(["measurement", "CPU (hist)", gpu_label, "how"], rows_md)
    payload = {
        "device": name,
        "gpu_measured": gpu,
        "speedup_cuda_over_cpu": speedup,
        "gpu_peak_ratio_quantile_over_dmatrix": mem_ratio,
        "cpu_peak_rss_ratio_quantile_over_dmatrix": cpu_mem_ratio,
        "gradient_sampling_accepted_on_cpu": cpu_accepts,
        "xgboost_build": {k: xgb.build_info().get(k) for k in ("USE_CUDA", "USE_RMM", "CUDA_VERSION")},
        "sizes": {"rows": rows, "cpu_rows": cpu_rows, "cols": COLS, "rounds": args.rounds,
                  "mem_rounds": args.mem_rounds, "study_bars": bars, "study_rounds": args.study_rounds,
                  "trials": args.trials,
                  "nthread": nthread, "params": PARAMS},
        "data": data,
        "train": {"cpu": train_cpu, "cuda": train_gpu},
        "memory": {"cpu": mem_cpu, "cuda": mem_gpu},
        "allocation_loop": {"cpu": alloc_cpu, "cuda": alloc_gpu},
        "sampling": {"cpu": samp_cpu, "cuda": samp_gpu},
        "study": {"cpu": study_cpu, "cuda": study_gpu},
        "elapsed_s": time.monotonic() - run.t0,
        "command": " ".join(["python", "bench/gpu.py", *sys.argv[1:]]),
        "load_average_1_5_15": {"start": load_start, "end": os.getloadavg()},
        "notes": notes,
        "table_markdown": markdown,
    }
    print(f"\ndevice: {name}\n\n{markdown}\n")
    for note in notes:
        print(note)
    if not args.no_write:
        print(f"-> {write_result('gpu', payload)}")


if __name__ == "__main__":
    main()
