"""One symbol's learning problem: features, target and forward returns, aligned in time."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from nova.spec import TrainingRunSpec
from nova_trainer.data import load_bars
from nova_trainer.features import build_features
from nova_trainer.target import forward_log_return, make_target


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


def build_symbol_data(bars: pd.DataFrame, spec: TrainingRunSpec, symbol: str) -> SymbolData:
    """Features from past bars only; target from the future; rows without a label dropped."""
    features = build_features(bars, spec.features.set)
    target = make_target(bars["close"], spec.target.kind, spec.target.horizon)
    fwd = forward_log_return(bars["close"], spec.target.horizon)
    labelled = target.notna().to_numpy()
    return SymbolData(symbol, features.loc[labelled],
                      target.to_numpy()[labelled].astype("float32"), fwd.to_numpy()[labelled])


def load_symbol_data(spec: TrainingRunSpec, symbol: str) -> SymbolData:
    return build_symbol_data(load_bars(spec.data, symbol), spec, symbol)


def to_frame(data: SymbolData) -> pd.DataFrame:
    """The prep shard layout: features, then `__target__` and `__fwd_return__`."""
    return data.X.assign(__target__=data.y, __fwd_return__=data.fwd_return)


def from_frame(frame: pd.DataFrame, symbol: str) -> SymbolData:
    X = frame.drop(columns=["__target__", "__fwd_return__"])
    return SymbolData(symbol, X, frame["__target__"].to_numpy("float32"),
                      frame["__fwd_return__"].to_numpy("float64"))
