"""Runs the groups a feature set needs and assembles one float32 frame.

Every indicator is computed in float64 (TA-Lib's native type) from past and current bars only, then
cast once to float32, the type XGBoost trains on. Warm-up rows stay NaN: XGBoost treats NaN as
missing, and filling them would need values the model could not have had at that time.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .base import INPUTS, Bars, TalibCall
from .registry import FEATURE_SETS, GROUP_OF, GROUPS, REGISTRY


def feature_names(feature_set: str = "default") -> list[str]:
    """The columns `build_features` returns for `feature_set`, in order."""
    try:
        return list(FEATURE_SETS[feature_set])
    except (KeyError, TypeError):
        raise ValueError(f"unknown feature set {feature_set!r}; known sets: {sorted(FEATURE_SETS)}") from None


def _check_bars(bars: pd.DataFrame) -> None:
    if not isinstance(bars, pd.DataFrame):
        raise TypeError(f"bars must be a pandas DataFrame, got {type(bars).__name__}")
    missing = [c for c in INPUTS if c not in bars.columns]
    if missing:
        raise ValueError(f"bars lack column(s) {missing}; need {list(INPUTS)}")
    if not isinstance(bars.index, pd.DatetimeIndex):
        raise ValueError(f"bars need a DatetimeIndex, got {type(bars.index).__name__}")
    if not bars.index.is_monotonic_increasing or not bars.index.is_unique:
        raise ValueError("bars' timestamps must be sorted ascending and unique")


def compute_features(bars: pd.DataFrame, names: Sequence[str], *,
                     calls: list[TalibCall] | None = None) -> pd.DataFrame:
    """The named features of one symbol's bars; `calls`, if given, receives each TA-Lib call made."""
    _check_bars(bars)
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise ValueError(f"unknown feature(s) {unknown[:10]}; see nova_trainer.features.REGISTRY")
    position = {name: i for i, name in enumerate(names)}
    if len(position) != len(names):
        raise ValueError("feature names must be unique")
    b = Bars(bars)
    # Row i of `block` is column i of the result: each feature is written contiguously, and the
    # transposed view becomes the DataFrame's single float32 block without another copy.
    block = np.empty((len(names), b.n), dtype=np.float32)
    needed = {id(GROUP_OF[name]) for name in names}
    for group in GROUPS:  # registry order: groups sharing a TA-Lib call run close together
        if id(group) not in needed:
            continue
        for key, values in group.compute(b).items():
            if key in position:
                block[position[key]] = values
    if calls is not None:
        calls.extend(b.calls)
    return pd.DataFrame(block.T, index=bars.index, columns=list(names), copy=False)


def build_features(bars: pd.DataFrame, feature_set: str = "default") -> pd.DataFrame:
    """The feature matrix of `feature_set` for one symbol: float32, same index as `bars`."""
    return compute_features(bars, feature_names(feature_set))
