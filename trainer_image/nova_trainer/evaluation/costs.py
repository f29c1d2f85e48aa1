"""Trading costs: `evaluation.costBps` basis points per unit of turnover, where turnover is the
change of position from one test bar to the next (|+1 -> -1| = 2 units). Each fold opens from flat
(its models differ and a gap separates the folds), so its first bar pays for the entry."""

from __future__ import annotations

import numpy as np


def turnover(positions: np.ndarray, fold_sizes: list[int]) -> np.ndarray:
    """|position change| per bar, the position before each fold being 0."""
    pos = np.asarray(positions, dtype="float64")
    out = np.empty_like(pos)
    start = 0
    for size in fold_sizes:
        part = pos[start:start + size]
        out[start:start + size] = np.abs(np.diff(part, prepend=0.0))
        start += size
    if start != len(pos):
        raise ValueError(f"fold sizes {fold_sizes} do not add up to {len(pos)} bars")
    return out


def net_returns(gross: np.ndarray, positions: np.ndarray, fold_sizes: list[int], cost_bps: float) -> np.ndarray:
    """Gross strategy returns less cost_bps / 10,000 per unit of turnover (log-return units)."""
    return np.asarray(gross, dtype="float64") - turnover(positions, fold_sizes) * cost_bps / 1e4
