"""Building blocks shared by the feature families: the bar arrays, feature specs and groups.

A *group* is one computation that yields one or more features (BBANDS gives both `bb_width_20`
and `bb_pctb_20`), so the engine runs only the groups a feature set needs and never computes an
indicator twice. TA-Lib calls go through `Bars.ta`, which memoises them (SMA(close, 20) serves
two features) and records each distinct call, so the benchmark can time TA-Lib alone on exactly
the indicators Nova computes with it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import talib

FAMILIES = ("trend", "momentum", "volatility", "volume", "return", "calendar")
INPUTS = ("open", "high", "low", "close", "volume")

CACHE_SIZE = 8
TalibCall = tuple[str, tuple[str, ...], tuple[float, ...]]  # (function, input columns, parameters)


@dataclass(frozen=True)
class FeatureSpec:
    """What one output column is. `talib` names the TA-Lib function(s) it is computed from, or None
    when it is plain numpy/pandas; `warmup` bounds the leading rows that may be NaN."""

    name: str
    family: str
    window: int | None
    talib: str | None
    warmup: int
    description: str


@dataclass(frozen=True)
class Group:
    features: tuple[FeatureSpec, ...]
    compute: Callable[[Bars], dict[str, np.ndarray]]


class Bars:
    """One symbol's bars as contiguous float64 arrays (what TA-Lib wants), plus shared derived series."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.index = pd.DatetimeIndex(frame.index)
        self.n = len(frame)
        self._cols = {c: np.ascontiguousarray(frame[c].to_numpy(dtype=np.float64)) for c in INPUTS}
        self._ta_cache: OrderedDict[TalibCall, object] = OrderedDict()
        self.calls: dict[TalibCall, None] = {}  # insertion-ordered set of distinct calls

    @property
    def open(self) -> np.ndarray:
        return self._cols["open"]

    @property
    def high(self) -> np.ndarray:
        return self._cols["high"]

    @property
    def low(self) -> np.ndarray:
        return self._cols["low"]

    @property
    def close(self) -> np.ndarray:
        return self._cols["close"]

    @property
    def volume(self) -> np.ndarray:
        return self._cols["volume"]

    def ta(self, func: str, inputs: tuple[str, ...], *params: float):
        """TA-Lib `func` on the named input columns, memoised per (func, inputs, params).

        The memo keeps only the last CACHE_SIZE results: groups that share a call sit next to each
        other, and holding every 1M-row output alive would cost memory and page faults."""
        key: TalibCall = (func, inputs, tuple(params))
        cache = self._ta_cache
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
        value = getattr(talib, func)(*(self._cols[c] for c in inputs), *params)
        cache[key] = value
        if len(cache) > CACHE_SIZE:
            cache.popitem(last=False)
        self.calls[key] = None
        return value

    @cached_property
    def log_close(self) -> np.ndarray:
        return np.log(self.close)

    @cached_property
    def ret1(self) -> np.ndarray:
        """1-bar log return of the close; NaN on the first row."""
        return shift_diff(self.log_close, 1)

    @cached_property
    def log_volume(self) -> np.ndarray:
        return np.log1p(self.volume)


def shift(x: np.ndarray, n: int) -> np.ndarray:
    """x lagged by n rows (n > 0: the past), NaN-padded: never pulls values from the future."""
    out = np.empty_like(x, dtype=np.float64)
    if n >= len(x):
        out[:] = np.nan
        return out
    out[:n] = np.nan
    out[n:] = x[:-n] if n else x
    return out


def shift_diff(x: np.ndarray, n: int) -> np.ndarray:
    """x[t] - x[t-n], NaN for the first n rows."""
    out = np.full(len(x), np.nan)
    if n < len(x):
        np.subtract(x[n:], x[:-n], out=out[n:])
    return out


def safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a / b, NaN where b is 0 (a flat window or zero volume means 'undefined', not infinity)."""
    out = np.full(np.shape(b), np.nan)
    np.divide(a, b, out=out, where=b != 0)
    return out


def finite(x: np.ndarray) -> np.ndarray:
    """x with +-inf replaced by NaN (a new array: pandas' outputs may be read-only)."""
    return np.where(np.isfinite(x), x, np.nan)


def rolling(x: np.ndarray, n: int):
    """pandas rolling window over a numpy array (full windows only: warm-up rows are NaN)."""
    return pd.Series(x, copy=False).rolling(n, min_periods=n)


def feature(name: str, family: str, window: int | None, talib_fn: str | None, warmup: int,
            description: str) -> FeatureSpec:
    if family not in FAMILIES:
        raise ValueError(f"feature '{name}': unknown family '{family}'; known: {FAMILIES}")
    return FeatureSpec(name, family, window, talib_fn, warmup, description)
