"""Feature engine speed: Nova vs TA-Lib alone vs a naive pandas implementation, one long series.

One seeded synthetic series (geometric random walk with volatility regimes; high/low contain
open/close; lognormal volume) of N bars. Timed, best of R, methods interleaved per round so a noisy
machine slows them alike:
- nova_full:          build_features(bars, "default"), every feature;
- nova_talib_subset:  Nova restricted to the features TA-Lib computes (feature set "talib"):
                      TA-Lib calls plus Nova's scale-free transforms, float32 cast and DataFrame;
- talib:              TA-Lib called directly for exactly the distinct indicator calls that subset
                      makes (recorded by the engine), outputs kept, as any user of them must keep them;
- talib_discard:      the same calls with each output dropped at once (memory reused; reported too);
- naive_pandas:       `nova_trainer.features.naive` (plain pandas rolling/ewm) for the same calls.
time_ratio_nova_over_talib = nova_talib_subset / talib (target <= 2.0).

    PYTHONPATH=trainer_image python bench/features.py [--rows 1000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import talib

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "trainer_image"))
import _naive_features as naive  # noqa: E402
from _common import table, write_result  # noqa: E402

from nova_trainer.features import compute_features, feature_names  # noqa: E402

INPUTS = ("open", "high", "low", "close", "volume")


def synthetic_bars(rows: int, seed: int = 7) -> pd.DataFrame:
    """Seeded geometric random walk, 1-minute bars, with volatility regimes and OHLC consistency."""
    rng = np.random.default_rng(seed)
    regime = np.repeat(rng.choice([0.0005, 0.001, 0.002], size=rows // 5000 + 1), 5000)[:rows]
    log_close = np.log(100.0) + np.cumsum(rng.standard_normal(rows) * regime)
    close = np.exp(log_close)
    open_ = np.exp(np.concatenate([[log_close[0]], log_close[:-1]]) + rng.standard_normal(rows) * regime * 0.2)
    wick = np.abs(rng.standard_normal((2, rows))) * regime
    high = np.maximum(open_, close) * np.exp(wick[0])
    low = np.minimum(open_, close) * np.exp(-wick[1])
    volume = np.round(rng.lognormal(8.0, 0.8, rows) * (regime / 0.001))
    index = pd.date_range("2000-01-03 09:30", periods=rows, freq="min", name="timestamp")
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=index)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    load_before = os.getloadavg()
    bars = synthetic_bars(args.rows)
    arrays = {c: np.ascontiguousarray(bars[c].to_numpy("float64")) for c in INPUTS}
    subset = feature_names("talib")
    calls: list = []
    compute_features(bars, subset, calls=calls)  # also a warm-up run
    print(f"{args.rows:,} bars; {len(feature_names())} features, {len(subset)} from TA-Lib "
          f"through {len(calls)} distinct TA-Lib calls", flush=True)

    def talib_keep() -> dict:
        return {call: getattr(talib, call[0])(*(arrays[c] for c in call[1]), *call[2]) for call in calls}

    def talib_discard() -> None:
        for func, inputs, params in calls:
            getattr(talib, func)(*(arrays[c] for c in inputs), *params)

    def naive_pandas() -> dict:
        return {call: naive.FUNCTIONS[call[0]](*(arrays[c] for c in call[1]), *call[2]) for call in calls}

    methods: dict[str, Callable[[], object]] = {
        "nova_full": lambda: compute_features(bars, feature_names("default")),
        "nova_talib_subset": lambda: compute_features(bars, subset),
        "talib": talib_keep,
        "talib_discard": talib_discard,
        "naive_pandas": naive_pandas,
    }
    times: dict[str, list[float]] = {name: [] for name in methods}
    for round_ in range(args.repeats):
        for name, fn in methods.items():
            start = time.perf_counter()
            result = fn()
            times[name].append(time.perf_counter() - start)
            del result
        print(f"round {round_ + 1}: " + ", ".join(f"{k} {v[-1]:.3f}s" for k, v in times.items()), flush=True)
    best = {name: min(values) for name, values in times.items()}

    payload = {
        "n_features": len(feature_names()),
        "n_features_talib": len(subset),
        "n_talib_calls": len(calls),
        "n_rows": args.rows,
        "repeats": args.repeats,
        "time_nova_s": round(best["nova_full"], 4),
        "time_talib_s": round(best["talib"], 4),
        "time_talib_discarding_outputs_s": round(best["talib_discard"], 4),
        "time_nova_talib_subset_s": round(best["nova_talib_subset"], 4),
        "time_naive_pandas_s": round(best["naive_pandas"], 4),
        "time_ratio_nova_over_talib": round(best["nova_talib_subset"] / best["talib"], 3),
        "time_ratio_nova_over_talib_discarding": round(best["nova_talib_subset"] / best["talib_discard"], 3),
        "time_ratio_naive_over_nova_subset": round(best["naive_pandas"] / best["nova_talib_subset"], 2),
        "target_ratio_nova_over_talib": 2.0,
        # the machine is shared: its 1-minute load average before and after says how quiet it was
        "load_average_1m": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "all_times_s": {k: [round(x, 4) for x in v] for k, v in times.items()},
        "talib_calls": [f"{f}({', '.join(i)}{''.join(', ' + str(p) for p in ps)})" for f, i, ps in calls],
        "libraries": {"talib": talib.__version__, "ta_lib_c": talib.__ta_version__.decode()
                      if isinstance(talib.__ta_version__, bytes) else str(talib.__ta_version__),
                      "pandas": pd.__version__, "numpy": np.__version__},
    }
    path = write_result("features", payload)
    rows = [
        ["Nova, all features", payload["n_features"], best["nova_full"], ""],
        ["Nova, TA-Lib features only", len(subset), best["nova_talib_subset"], payload["time_ratio_nova_over_talib"]],
        [f"TA-Lib alone, same {len(calls)} calls (outputs kept)", len(calls), best["talib"], 1.0],
        ["TA-Lib alone, outputs dropped", len(calls), best["talib_discard"],
         round(best["talib_discard"] / best["talib"], 3)],
        ["naive pandas, same calls", len(calls), best["naive_pandas"],
         round(best["naive_pandas"] / best["talib"], 3)],
    ]
    print(f"\n{args.rows:,} rows, best of {args.repeats}:\n")
    print(table(["method", "outputs", "seconds", "x TA-Lib"], rows))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
