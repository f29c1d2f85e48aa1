"""Volatility: ranges and realised volatility, as fractions of price (never in price units).

Realised-vol estimators (close-to-close, Parkinson, Garman-Klass, Rogers-Satchell) are per-bar
standard deviations of log returns over the window, not annualised: the bar interval is the data's.
"""

from __future__ import annotations

import numpy as np

from .base import Bars, Group, feature, rolling, safe_div

F = "volatility"
HLC = ("high", "low", "close")
LN2 = np.log(2.0)


def _natr(n: int) -> Group:
    name = f"atr_pct_{n}"
    return Group((feature(name, F, n, "NATR", n, f"average true range over {n} bars, % of close"),),
                 lambda b: {name: b.ta("NATR", HLC, n)})


def _bbands(n: int) -> Group:
    def compute(b: Bars) -> dict[str, np.ndarray]:
        upper, middle, lower = b.ta("BBANDS", ("close",), n, 2.0, 2.0, 0)
        width = upper - lower
        return {f"bb_width_{n}": width / middle, f"bb_pctb_{n}": safe_div(b.close - lower, width)}

    return Group((feature(f"bb_width_{n}", F, n, "BBANDS", n - 1, f"Bollinger band width (2 sd, {n} bars) / middle"),
                  feature(f"bb_pctb_{n}", F, n, "BBANDS", n - 1, f"Bollinger %B: close within the {n}-bar bands")),
                 compute)


def _donchian(b: Bars, n: int) -> tuple[np.ndarray, np.ndarray]:
    return b.ta("MAX", ("high",), n), b.ta("MIN", ("low",), n)


def _donchian_pos(n: int) -> Group:
    name = f"donchian_pos_{n}"

    def compute(b: Bars) -> dict[str, np.ndarray]:
        hi, lo = _donchian(b, n)
        return {name: safe_div(b.close - lo, hi - lo)}

    return Group((feature(name, F, n, "MAX,MIN", n - 1, f"close within the {n}-bar high-low channel, 0-1"),), compute)


def _donchian_width(n: int) -> Group:
    name = f"donchian_width_pct_{n}"

    def compute(b: Bars) -> dict[str, np.ndarray]:
        hi, lo = _donchian(b, n)
        return {name: (hi - lo) / b.close * 100.0}

    return Group((feature(name, F, n, "MAX,MIN", n - 1, f"{n}-bar high-low channel width, % of close"),), compute)


def _realvol(b: Bars, n: int) -> np.ndarray:
    return rolling(b.ret1, n).std().to_numpy()


def _realvol_group(n: int) -> Group:
    name = f"realvol_log_{n}"
    return Group((feature(name, F, n, None, n, f"std of 1-bar log returns over {n} bars"),),
                 lambda b: {name: _realvol(b, n)})


def _vol_ratio(fast: int, slow: int) -> Group:
    name = f"realvol_ratio_{fast}_{slow}"
    return Group((feature(name, F, slow, None, slow, f"realvol_log_{fast} / realvol_log_{slow}"),),
                 lambda b: {name: safe_div(_realvol(b, fast), _realvol(b, slow))})


def _range_vol(kind: str, n: int) -> Group:
    name = f"{kind}_vol_{n}"
    text = {"parkinson": "Parkinson (high-low)", "garman_klass": "Garman-Klass (OHLC)",
            "rogers_satchell": "Rogers-Satchell (OHLC, drift-robust)"}[kind]

    def compute(b: Bars) -> dict[str, np.ndarray]:
        hl = np.log(b.high / b.low)
        if kind == "parkinson":
            per_bar = hl * hl / (4.0 * LN2)
        elif kind == "garman_klass":
            co = np.log(b.close / b.open)
            per_bar = 0.5 * hl * hl - (2.0 * LN2 - 1.0) * co * co
        else:
            per_bar = (np.log(b.high / b.close) * np.log(b.high / b.open)
                       + np.log(b.low / b.close) * np.log(b.low / b.open))
        return {name: np.sqrt(np.maximum(rolling(per_bar, n).mean().to_numpy(), 0.0))}

    return Group((feature(name, F, n, None, n - 1, f"{text} volatility estimate over {n} bars, per bar"),), compute)


GROUPS: list[Group] = [
    *(_natr(n) for n in (7, 14, 28)),
    _bbands(20),
    _bbands(50),
    Group((feature("trange_pct_1", F, 1, "TRANGE", 1, "true range of the bar, % of close"),),
          lambda b: {"trange_pct_1": b.ta("TRANGE", HLC) / b.close * 100.0}),
    Group((feature("hl_log_range_1", F, 1, None, 0, "log(high / low) of the bar"),),
          lambda b: {"hl_log_range_1": np.log(b.high / b.low)}),
    *(_realvol_group(n) for n in (5, 10, 20, 60)),
    _vol_ratio(5, 20),
    _vol_ratio(20, 60),
    *(_range_vol(kind, n) for kind in ("parkinson", "garman_klass") for n in (10, 20)),
    _range_vol("rogers_satchell", 20),
    _donchian_pos(20),
    _donchian_width(20),  # shares MAX/MIN(20) with the line above
    _donchian_pos(55),
]
