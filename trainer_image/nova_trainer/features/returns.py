"""Returns: log returns over several horizons and lags, bar shape, distance from recent extremes,
and the shape of the recent return distribution. All unit-free."""

from __future__ import annotations

import numpy as np

from .base import Bars, Group, feature, finite, rolling, safe_div, shift, shift_diff

F = "return"
RET_WINDOWS = (1, 2, 3, 5, 10, 20, 60)


def _ret(n: int) -> Group:
    name = f"ret_log_{n}"
    return Group((feature(name, F, n, None, n, f"log(close / close {n} bars ago)"),),
                 lambda b: {name: shift_diff(b.log_close, n)})


def _ret_lag(k: int) -> Group:
    name = f"ret_log_1_lag_{k}"
    return Group((feature(name, F, 1, None, k + 1, f"1-bar log return {k} bar(s) ago"),),
                 lambda b: {name: shift(b.ret1, k)})


def _bar_shape(b: Bars) -> dict[str, np.ndarray]:
    top = np.maximum(b.open, b.close)
    bottom = np.minimum(b.open, b.close)
    return {
        "gap_log_1": np.log(b.open) - shift(b.log_close, 1),
        "intraday_log_1": np.log(b.close / b.open),
        "close_pos_range_1": safe_div(b.close - b.low, b.high - b.low),
        "upper_shadow_pct_1": (b.high - top) / b.close * 100.0,
        "lower_shadow_pct_1": (bottom - b.low) / b.close * 100.0,
    }


def _moments(b: Bars) -> dict[str, np.ndarray]:
    r = rolling(b.ret1, 20)
    mean, std = r.mean().to_numpy(), r.std().to_numpy()
    return {"ret_skew_20": finite(r.skew().to_numpy()), "ret_kurt_20": finite(r.kurt().to_numpy()),
            "ret_zscore_20": safe_div(b.ret1 - mean, std), "ret_sharpe_20": safe_div(mean, std)}


def _extremes(n: int) -> Group:
    def compute(b: Bars) -> dict[str, np.ndarray]:
        return {f"drawdown_close_{n}": b.close / b.ta("MAX", ("close",), n) - 1.0,
                f"rally_close_{n}": b.close / b.ta("MIN", ("close",), n) - 1.0}

    return Group((feature(f"drawdown_close_{n}", F, n, "MAX", n - 1, f"close / highest close of {n} bars - 1"),
                  feature(f"rally_close_{n}", F, n, "MIN", n - 1, f"close / lowest close of {n} bars - 1")),
                 compute)


GROUPS: list[Group] = [
    *(_ret(n) for n in RET_WINDOWS),
    *(_ret_lag(k) for k in (1, 2, 3)),
    Group((feature("gap_log_1", F, 1, None, 1, "log(open / previous close): the overnight gap"),
           feature("intraday_log_1", F, 1, None, 0, "log(close / open) within the bar"),
           feature("close_pos_range_1", F, 1, None, 0, "(close - low) / (high - low): where the bar closed"),
           feature("upper_shadow_pct_1", F, 1, None, 0, "high above the bar body, % of close"),
           feature("lower_shadow_pct_1", F, 1, None, 0, "low below the bar body, % of close")), _bar_shape),
    Group((feature("ret_skew_20", F, 20, None, 20, "skewness of 1-bar log returns over 20 bars"),
           feature("ret_kurt_20", F, 20, None, 20, "excess kurtosis of 1-bar log returns over 20 bars"),
           feature("ret_zscore_20", F, 20, None, 20, "(1-bar log return - its 20-bar mean) / 20-bar std"),
           feature("ret_sharpe_20", F, 20, None, 20, "20-bar mean / std of 1-bar log returns")), _moments),
    _extremes(20),
    _extremes(252),
]
