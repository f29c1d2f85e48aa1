"""The Probability of Backtest Overfitting by combinatorially symmetric cross-validation (Bailey,
Borwein, López de Prado and Zhu, "The Probability of Backtest Overfitting", 2015).

The T x N matrix of trial returns is cut into S blocks of consecutive rows. For each of the
C(S, S/2) ways to pick half of the blocks as the in-sample set J (the rest is J-bar), the trial with
the best in-sample Sharpe n* is located in the out-of-sample ranking: w = rank(n*) / (N + 1),
lambda = ln(w / (1 - w)). PBO is the share of combinations with lambda <= 0, i.e. where the
in-sample winner is at or below the out-of-sample median. Block sums make each combination a few
array sums, so S = 16 (12,870 combinations) over 200 trials takes well under a second."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PboResult:
    pbo: float
    logits: np.ndarray  # lambda per combination
    n_combinations: int
    partitions: int
    n_trials: int
    rows_used: int  # T trimmed to a multiple of S (the oldest rows dropped)
    degradation: float  # mean out-of-sample Sharpe of n* minus its in-sample Sharpe (per obs)

    def as_dict(self) -> dict[str, float]:
        return {"pbo": self.pbo, "n_combinations": self.n_combinations, "partitions": self.partitions,
                "n_trials": self.n_trials, "rows_used": self.rows_used, "degradation": self.degradation}


def _sharpe(total: np.ndarray, total_sq: np.ndarray, n: int) -> np.ndarray:
    mean = total / n
    var = np.maximum(total_sq - n * mean**2, 0.0) / (n - 1)
    std = np.sqrt(var)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(std > 1e-15, mean / np.where(std > 1e-15, std, 1.0), 0.0)


def pbo_cscv(returns: np.ndarray, partitions: int = 16) -> PboResult:
    """PBO of the trials in the columns of `returns` (rows: bars, in time order)."""
    m = np.asarray(returns, dtype="float64")
    if m.ndim != 2 or m.shape[1] < 2:
        raise ValueError("PBO needs a matrix of at least 2 trials (columns)")
    if partitions < 2 or partitions % 2:
        raise ValueError(f"PBO partitions must be even and >= 2 (got {partitions})")
    rows = m.shape[0] // partitions * partitions
    if rows // partitions < 2:
        raise ValueError(f"PBO with S={partitions} needs at least {2 * partitions} bars (got {m.shape[0]})")
    m = m[m.shape[0] - rows:]
    n_trials, size = m.shape[1], rows // partitions
    blocks = m.reshape(partitions, size, n_trials)
    s1, s2 = blocks.sum(axis=1), (blocks**2).sum(axis=1)  # S x N
    combos = np.array(list(itertools.combinations(range(partitions), partitions // 2)))
    pick = np.zeros((len(combos), partitions))
    np.put_along_axis(pick, combos, 1.0, axis=1)  # C x S indicator of the in-sample blocks
    n_half = size * partitions // 2
    train1, train2 = pick @ s1, pick @ s2  # C x N, one matrix product each
    test1, test2 = s1.sum(axis=0) - train1, s2.sum(axis=0) - train2
    sr_in, sr_out = _sharpe(train1, train2, n_half), _sharpe(test1, test2, n_half)
    best = np.argmax(sr_in, axis=1)
    idx = np.arange(len(combos))
    chosen = sr_out[idx, best][:, None]
    below = (sr_out < chosen).sum(axis=1)
    ties = (sr_out == chosen).sum(axis=1)  # includes n* itself: average rank among ties
    rank = below + (ties + 1) / 2.0
    w = rank / (n_trials + 1)
    logits = np.log(w / (1 - w))
    degradation = float(np.mean(sr_out[idx, best] - sr_in[idx, best]))
    return PboResult(pbo=float(np.mean(logits <= 0)), logits=logits, n_combinations=len(combos),
                     partitions=partitions, n_trials=n_trials, rows_used=rows, degradation=degradation)


def n_combinations(partitions: int) -> int:
    return math.comb(partitions, partitions // 2)
