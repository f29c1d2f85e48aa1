"""One symbol's learning problem: features, target and forward returns, aligned in time."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from nova.errors import DataError
from nova.spec import TrainingRunSpec
from nova_trainer.data import load_bars
from nova_trainer.features.calendar import local_calendar
from nova_trainer.features.engine import compute_features, feature_names
from nova_trainer.features.inputs import close_only
from nova_trainer.target import forward_log_return, make_target

log = logging.getLogger(__name__)


@dataclass
class SymbolData:
    symbol: str
    X: pd.DataFrame  # float32 features; NaN where an indicator is still warming up
    y: np.ndarray  # float32 target
    fwd_return: np.ndarray  # float64 log return over the horizon, for strategy metrics

    @property
    def start(self) -> str:
        return str(self.X.index[0].date())

    @property
    def end(self) -> str:
        return str(self.X.index[-1].date())

    def rows(self, part: slice) -> SymbolData:
        return SymbolData(self.symbol, self.X.iloc[part], self.y[part], self.fwd_return[part])


def _features(bars: pd.DataFrame, spec: TrainingRunSpec, symbol: str) -> pd.DataFrame:
    names = feature_names(spec.features.set)
    if spec.data.columns == "close":
        kept = close_only(names)
        log.info("%s: close-only series (data.columns: close): %d of %d features, those computed from "
                 "the close alone: %s", symbol, len(kept), len(names), ", ".join(kept))
        names = kept
    features = compute_features(bars, names)
    if spec.data.timezone and spec.data.interval != "1d":
        local = local_calendar(bars.index, spec.data.timezone)
        for name, values in local.items():
            if name in features.columns:
                features[name] = values.astype("float32")
    return features


def build_symbol_data(bars: pd.DataFrame, spec: TrainingRunSpec, symbol: str) -> SymbolData:
    """Features from past bars only; target from the future; rows without a label dropped."""
    features = _features(bars, spec, symbol)
    target = make_target(bars["close"], spec.target.kind, spec.target.horizon)
    fwd = forward_log_return(bars["close"], spec.target.horizon)
    labelled = target.notna().to_numpy()
    return SymbolData(symbol, features.loc[labelled],
                      target.to_numpy()[labelled].astype("float32"), fwd.to_numpy()[labelled])


def load_symbol_data(spec: TrainingRunSpec, symbol: str, reserve: bool = True) -> SymbolData:
    """The run's learning data; without its newest `data.reserveLastBars` rows unless `reserve` is
    False (the promotion judges models on those)."""
    data = build_symbol_data(load_bars(spec.data, symbol), spec, symbol)
    kept = len(data.y) - spec.data.reserve_last_bars if reserve else len(data.y)
    if kept <= 0:
        raise DataError(f"{symbol}: data.reserveLastBars {spec.data.reserve_last_bars} keeps apart every one of "
                        f"its {len(data.y)} bars; widen the window (data.start/lookback) or lower "
                        "promotion.window/gap")
    if kept < len(data.y):
        log.info("%s: the newest %d bars kept apart (data.reserveLastBars); learning from %d", symbol,
                 len(data.y) - kept, kept)
        data = data.rows(slice(0, kept))
    return data


def to_frame(data: SymbolData) -> pd.DataFrame:
    """The prep shard layout: features, then `__target__` and `__fwd_return__`."""
    return data.X.assign(__target__=data.y, __fwd_return__=data.fwd_return)


def from_frame(frame: pd.DataFrame, symbol: str) -> SymbolData:
    X = frame.drop(columns=["__target__", "__fwd_return__"])
    return SymbolData(symbol, X, frame["__target__"].to_numpy("float32"),
                      frame["__fwd_return__"].to_numpy("float64"))
