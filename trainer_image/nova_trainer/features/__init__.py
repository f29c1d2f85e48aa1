"""Nova's feature engine: one symbol's OHLCV bars in, a float32 feature matrix out.

Families: trend, momentum, volatility, volume, return, calendar. TA-Lib computes every indicator it
has; the rest is vectorised numpy/pandas. Features are scale-free (ratios, percentages, oscillators)
so one model can learn across symbols and decades, and causal: row t uses bars up to t only.

    build_features(bars, "default")   # 118 columns; "minimal" has 12
    feature_names("default")
    REGISTRY["rsi_14"]                # FeatureSpec(name, family, window, talib, warmup, description)

Input contract: index a tz-naive DatetimeIndex named `timestamp`, sorted and unique; columns
`open, high, low, close, volume` (float64, no NaN, prices > 0), i.e. what `nova_trainer.data` returns.
A feature whose denominator is zero (a window with high == low everywhere, or no volume) is NaN there.
"""

from __future__ import annotations

from .base import FAMILIES, FeatureSpec
from .engine import build_features, compute_features, feature_names
from .registry import FEATURE_SETS, REGISTRY, families

__all__ = ["FAMILIES", "FEATURE_SETS", "REGISTRY", "FeatureSpec", "build_features", "compute_features",
           "families", "feature_names"]
