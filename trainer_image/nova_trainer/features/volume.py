"""Volume: participation and money flow. Cumulative lines (OBV, A/D) are level-free only as changes,
so they enter as their n-bar change over the n-bar traded volume; raw volume enters as log z-scores
and ratios to its own average. Zero volume over a whole window gives NaN, never infinity."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .base import Bars, Group, feature, finite, rolling, safe_div, shift_diff

F = "volume"
HLC = ("high", "low", "close")
HLCV = ("high", "low", "close", "volume")


def _line_change(line_fn: str, inputs: tuple[str, ...], n: int, prefix: str, text: str) -> Group:
    name = f"{prefix}_change_ratio_{n}"

    def compute(b: Bars) -> dict[str, np.ndarray]:
        return {name: safe_div(shift_diff(b.ta(line_fn, inputs), n), b.ta("SUM", ("volume",), n))}

    return Group((feature(name, F, n, f"{line_fn},SUM", n, f"{n}-bar change of {text} / {n}-bar volume"),),
                 compute)


def _mfi(n: int) -> Group:
    name = f"mfi_{n}"

    def compute(b: Bars) -> dict[str, np.ndarray]:
        # TA-Lib answers 0 when no volume traded over the window; undefined is NaN here, as for
        # every other volume feature.
        traded = b.ta("SUM", ("volume",), n)
        return {name: np.where(traded > 0, b.ta("MFI", HLCV, n), np.nan)}

    return Group((feature(name, F, n, "MFI,SUM", n, f"money flow index over {n} bars, 0-100 (NaN without volume)"),),
                 compute)


def _volume_sma_ratio(n: int) -> Group:
    name = f"volume_sma_ratio_{n}"
    return Group((feature(name, F, n, "SMA", n - 1, f"volume / SMA(volume, {n})"),),
                 lambda b: {name: safe_div(b.volume, b.ta("SMA", ("volume",), n))})


def _log_volume_zscore(n: int) -> Group:
    name = f"log_volume_zscore_{n}"

    def compute(b: Bars) -> dict[str, np.ndarray]:
        r = rolling(b.log_volume, n)
        return {name: safe_div(b.log_volume - r.mean().to_numpy(), r.std().to_numpy())}

    return Group((feature(name, F, n, None, n - 1, f"z-score of log(1 + volume) over {n} bars"),), compute)


def _vwap_dist(n: int) -> Group:
    name = f"vwap_dist_pct_{n}"

    def compute(b: Bars) -> dict[str, np.ndarray]:
        typical = (b.high + b.low + b.close) / 3.0
        pv = rolling(typical * b.volume, n).sum().to_numpy()
        vwap = safe_div(pv, rolling(b.volume, n).sum().to_numpy())
        return {name: (b.close / vwap - 1.0) * 100.0}

    return Group((feature(name, F, n, None, n - 1, f"close vs the {n}-bar volume-weighted typical price, %"),),
                 compute)


def _efi(b: Bars) -> dict[str, np.ndarray]:
    """Elder's force index made unit-free: the volume-weighted EMA of 1-bar log returns."""
    ret = np.nan_to_num(b.ret1)  # first row: no return yet, so no force
    num = pd.Series(ret * b.volume, copy=False).ewm(span=13, adjust=False).mean().to_numpy()
    den = pd.Series(b.volume, copy=False).ewm(span=13, adjust=False).mean().to_numpy()
    out = safe_div(num, den)
    out[:13] = np.nan  # the EMA's first 13 bars are warm-up, as for TA-Lib's EMA(13)
    return {"force_index_ratio_13": out}


def _ret_volume_corr(b: Bars) -> dict[str, np.ndarray]:
    dv = shift_diff(b.log_volume, 1)
    corr = rolling(np.abs(b.ret1), 20).corr(rolling(dv, 20).obj).to_numpy()
    return {"absret_volume_corr_20": finite(corr)}


GROUPS: list[Group] = [
    _line_change("OBV", ("close", "volume"), 10, "obv", "on-balance volume"),
    _line_change("OBV", ("close", "volume"), 20, "obv", "on-balance volume"),
    _line_change("AD", HLCV, 20, "ad", "the Chaikin accumulation/distribution line (= Chaikin money flow)"),
    Group((feature("adosc_ratio_3_10", F, 10, "ADOSC,SMA", 9,
                   "Chaikin A/D oscillator (3, 10) / SMA(volume, 10)"),),
          lambda b: {"adosc_ratio_3_10": safe_div(b.ta("ADOSC", HLCV, 3, 10), b.ta("SMA", ("volume",), 10))}),
    _mfi(14),
    _mfi(28),
    _volume_sma_ratio(5),
    _volume_sma_ratio(20),
    _log_volume_zscore(20),
    _log_volume_zscore(60),
    Group((feature("log_volume_change_1", F, 1, None, 1, "log(1 + volume) - log(1 + previous volume)"),),
          lambda b: {"log_volume_change_1": shift_diff(b.log_volume, 1)}),
    _vwap_dist(20),
    _vwap_dist(60),
    _line_change("AD", HLCV, 60, "ad", "the Chaikin accumulation/distribution line"),
    Group((feature("force_index_ratio_13", F, 13, None, 13,
                   "EMA(13) of log return x volume / EMA(13) of volume (Elder's force index, unit-free)"),), _efi),
    Group((feature("absret_volume_corr_20", F, 20, None, 20,
                   "20-bar correlation of |1-bar log return| with the log volume change"),), _ret_volume_corr),
]
