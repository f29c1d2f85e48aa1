"""Trend: where the close sits against its moving averages, trend strength and direction.

Prices enter only as ratios to the close (or already-bounded oscillators), so the features mean the
same on a $5 stock and a $500 one.
"""

from __future__ import annotations

import numpy as np

from .base import Bars, Group, feature

MA_WINDOWS = (5, 10, 20, 50, 200)
F = "trend"


def _ratio_minus_one(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.divide(a, b)
    out -= 1.0  # in place: one temporary, not two, per 1M-row feature
    return out


def _ma_ratio(kind: str, n: int) -> Group:
    name = f"{kind.lower()}_close_ratio_{n}"
    spec = feature(name, F, n, kind, n - 1, f"close / {kind}(close, {n}) - 1")
    return Group((spec,), lambda b: {name: _ratio_minus_one(b.close, b.ta(kind, ("close",), n))})


def _sma_cross(fast: int, slow: int) -> Group:
    name = f"sma_cross_ratio_{fast}_{slow}"
    spec = feature(name, F, slow, "SMA", slow - 1, f"SMA(close, {fast}) / SMA(close, {slow}) - 1")
    return Group((spec,), lambda b: {
        name: _ratio_minus_one(b.ta("SMA", ("close",), fast), b.ta("SMA", ("close",), slow))})


def _macd(b: Bars) -> dict[str, np.ndarray]:
    line, signal, hist = b.ta("MACD", ("close",), 12, 26, 9)
    scale = 100.0 / b.close
    return {"macd_line_pct_12_26": line * scale, "macd_signal_pct_12_26_9": signal * scale,
            "macd_hist_pct_12_26_9": hist * scale}


def _adx(n: int) -> Group:
    name = f"adx_{n}"
    return Group((feature(name, F, n, "ADX", 2 * n - 1, f"Average directional index over {n} bars"),),
                 lambda b: {name: b.ta("ADX", ("high", "low", "close"), n)})


def _di(b: Bars) -> dict[str, np.ndarray]:
    hlc = ("high", "low", "close")
    return {"plus_di_14": b.ta("PLUS_DI", hlc, 14), "minus_di_14": b.ta("MINUS_DI", hlc, 14)}


def _aroon(b: Bars) -> dict[str, np.ndarray]:
    down, up = b.ta("AROON", ("high", "low"), 25)
    return {"aroon_up_25": up, "aroon_down_25": down, "aroon_osc_25": up - down}


def _sar(b: Bars) -> dict[str, np.ndarray]:
    sar = b.ta("SAR", ("high", "low"), 0.02, 0.2)
    return {"sar_dist_pct": (b.close - sar) / b.close * 100.0}


def _slope(n: int) -> Group:
    name = f"linreg_slope_pct_{n}"
    spec = feature(name, F, n, "LINEARREG_SLOPE", n - 1,
                   f"least-squares slope of the close over {n} bars, % of the close per bar")
    return Group((spec,), lambda b: {name: b.ta("LINEARREG_SLOPE", ("close",), n) / b.close * 100.0})


GROUPS: list[Group] = [
    *(_ma_ratio("SMA", n) for n in MA_WINDOWS),
    _sma_cross(20, 50),  # next to the SMA ratios: they share SMA(close, 20/50/200) in the memo
    _sma_cross(50, 200),
    *(_ma_ratio("EMA", n) for n in MA_WINDOWS),
    Group((feature("macd_line_pct_12_26", F, 26, "MACD", 33, "MACD line (EMA12 - EMA26), % of close"),
           feature("macd_signal_pct_12_26_9", F, 26, "MACD", 33, "MACD signal (EMA9 of the line), % of close"),
           feature("macd_hist_pct_12_26_9", F, 26, "MACD", 33, "MACD histogram (line - signal), % of close")),
          _macd),
    _adx(14),
    _adx(28),
    Group((feature("plus_di_14", F, 14, "PLUS_DI", 14, "+DI: upward directional indicator"),
           feature("minus_di_14", F, 14, "MINUS_DI", 14, "-DI: downward directional indicator")), _di),
    Group((feature("aroon_up_25", F, 25, "AROON", 25, "Aroon up: recency of the 25-bar high, 0-100"),
           feature("aroon_down_25", F, 25, "AROON", 25, "Aroon down: recency of the 25-bar low, 0-100"),
           feature("aroon_osc_25", F, 25, "AROON", 25, "Aroon up - Aroon down")), _aroon),
    Group((feature("sar_dist_pct", F, None, "SAR", 1,
                   "(close - parabolic SAR(0.02, 0.2)) / close, %: which side of the stop and how far"),),
          _sar),
    _slope(20),
    _slope(50),
    Group((feature("trix_15", F, 15, "TRIX", 43, "1-bar % change of the triple EMA(15) of the close"),),
          lambda b: {"trix_15": b.ta("TRIX", ("close",), 15)}),
]
