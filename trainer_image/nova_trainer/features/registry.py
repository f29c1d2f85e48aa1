"""Every feature Nova can compute, and the named feature sets.

The registry is built from the family modules at import time and checked once: names are unique,
every feature belongs to a family and to exactly one group.
"""

from __future__ import annotations

from . import calendar, momentum, returns, trend, volatility, volume
from .base import FAMILIES, FeatureSpec, Group

GROUPS: tuple[Group, ...] = (*trend.GROUPS, *momentum.GROUPS, *volatility.GROUPS, *volume.GROUPS,
                             *returns.GROUPS, *calendar.GROUPS)


def _index(groups: tuple[Group, ...]) -> tuple[dict[str, FeatureSpec], dict[str, Group]]:
    specs: dict[str, FeatureSpec] = {}
    owner: dict[str, Group] = {}
    for group in groups:
        for spec in group.features:
            if spec.name in specs:
                raise RuntimeError(f"feature '{spec.name}' is defined twice")
            specs[spec.name] = spec
            owner[spec.name] = group
    return specs, owner


REGISTRY, GROUP_OF = _index(GROUPS)

MINIMAL = (
    "rsi_14", "macd_hist_pct_12_26_9", "sma_close_ratio_20", "atr_pct_14", "bb_width_20", "bb_pctb_20",
    "ret_log_1", "ret_log_5", "realvol_log_20", "log_volume_zscore_20", "dow_sin", "dow_cos",
)

FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "default": tuple(REGISTRY),
    "minimal": MINIMAL,
    # Only what TA-Lib computes: used by the benchmark to compare Nova with TA-Lib on equal terms.
    "talib": tuple(name for name, spec in REGISTRY.items() if spec.talib),
}

for _set, _names in FEATURE_SETS.items():
    _unknown = [n for n in _names if n not in REGISTRY]
    if _unknown:
        raise RuntimeError(f"feature set '{_set}' names unknown features {_unknown}")
for _spec in REGISTRY.values():
    assert _spec.family in FAMILIES


def families() -> dict[str, list[str]]:
    """Feature names by family, in registry order."""
    out: dict[str, list[str]] = {f: [] for f in FAMILIES}
    for spec in REGISTRY.values():
        out[spec.family].append(spec.name)
    return out
