"""Momentum: bounded oscillators and rates of change (all scale-free by construction)."""

from __future__ import annotations

import numpy as np

from .base import Bars, Group, feature

F = "momentum"
HLC = ("high", "low", "close")


def _single(name: str, window: int | None, fn: str, warmup: int, description: str, inputs: tuple[str, ...],
            *params: float) -> Group:
    return Group((feature(name, F, window, fn, warmup, description),),
                 lambda b: {name: b.ta(fn, inputs, *params)})


def _stoch(b: Bars) -> dict[str, np.ndarray]:
    k, d = b.ta("STOCH", HLC, 14, 3, 0, 3, 0)
    return {"stoch_k_14_3": k, "stoch_d_14_3": d}


def _mom_pct(b: Bars) -> dict[str, np.ndarray]:
    return {"mom_pct_10": b.ta("MOM", ("close",), 10) / b.close * 100.0}


def _stochrsi(b: Bars) -> dict[str, np.ndarray]:
    k, _d = b.ta("STOCHRSI", ("close",), 14, 14, 3, 0)
    return {"stochrsi_k_14": k}


GROUPS: list[Group] = [
    *(_single(f"rsi_{n}", n, "RSI", n, f"Wilder RSI over {n} bars, 0-100", ("close",), n) for n in (7, 14, 28)),
    Group((feature("stoch_k_14_3", F, 14, "STOCH", 17, "slow stochastic %K (14, smoothed 3), 0-100"),
           feature("stoch_d_14_3", F, 14, "STOCH", 17, "slow stochastic %D (3-bar SMA of %K), 0-100")), _stoch),
    Group((feature("stochrsi_k_14", F, 14, "STOCHRSI", 29, "stochastic of RSI(14) over 14 bars, 0-100"),),
          _stochrsi),
    *(_single(f"willr_{n}", n, "WILLR", n - 1, f"Williams %R over {n} bars, -100-0", HLC, n) for n in (14, 28)),
    *(_single(f"cci_{n}", n, "CCI", n - 1, f"commodity channel index over {n} bars", HLC, n) for n in (14, 20)),
    *(_single(f"roc_{n}", n, "ROC", n, f"{n}-bar rate of change of the close, %", ("close",), n)
      for n in (10, 20, 60)),
    Group((feature("mom_pct_10", F, 10, "MOM", 10, "10-bar momentum (close - close 10 bars ago), % of close"),),
          _mom_pct),
    _single("ultosc_7_14_28", 28, "ULTOSC", 28, "ultimate oscillator (7, 14, 28), 0-100", HLC, 7, 14, 28),
    _single("cmo_14", 14, "CMO", 14, "Chande momentum oscillator over 14 bars, -100-100", ("close",), 14),
    _single("ppo_sma_12_26", 26, "PPO", 25, "percentage price oscillator of SMA(12) over SMA(26), %",
            ("close",), 12, 26, 0),
    _single("bop_1", 1, "BOP", 0, "balance of power of the bar: (close - open) / (high - low)",
            ("open", "high", "low", "close")),
]
