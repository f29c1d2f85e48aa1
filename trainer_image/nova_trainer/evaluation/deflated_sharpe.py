"""The Deflated Sharpe Ratio (Bailey and López de Prado, "The Deflated Sharpe Ratio: Correcting for
Selection Bias, Backtest Overfitting and Non-Normality", 2014).

All Sharpe ratios here are per observation (not annualised), as in the paper:

- expected maximum Sharpe of N trials under the null (true Sharpe 0), eq. (the "SR0"):
  SR0 = sqrt(V[SR_n]) * ((1 - g) * Z^-1(1 - 1/N) + g * Z^-1(1 - 1/(N e))), g = Euler-Mascheroni;
- Probabilistic Sharpe Ratio against a benchmark SR0:
  PSR(SR0) = Z((SR - SR0) * sqrt(T - 1) / sqrt(1 - g3 * SR + (g4 - 1) / 4 * SR^2)),
  g3 the skewness and g4 the (non-excess) kurtosis of the returns;
- DSR = PSR(SR0): the probability that the selected trial's true Sharpe is above zero once the
  number of trials and the spread of their Sharpe ratios are accounted for.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

EULER_GAMMA = float(np.euler_gamma)


def sharpe(returns: np.ndarray) -> float:
    """Per-observation Sharpe (mean / sample std); 0 for a constant series."""
    if len(returns) < 2:
        return 0.0
    std = float(np.std(returns, ddof=1))
    return float(np.mean(returns)) / std if std > 0 and math.isfinite(std) else 0.0


def expected_max_sharpe(n_trials: int, sharpe_variance: float) -> float:
    """E[max SR] of `n_trials` independent trials whose true Sharpe is zero."""
    if n_trials < 2 or not sharpe_variance > 0:
        return 0.0
    n = float(n_trials)
    z = (1 - EULER_GAMMA) * stats.norm.ppf(1 - 1 / n) + EULER_GAMMA * stats.norm.ppf(1 - 1 / (n * math.e))
    return float(math.sqrt(sharpe_variance) * z)


def probabilistic_sharpe(sr: float, sr0: float, n_obs: int, skew: float, kurtosis: float) -> float:
    """PSR: P(true Sharpe > sr0) given the estimate `sr` from `n_obs` returns of that skew/kurtosis."""
    if n_obs < 2:
        return float("nan")
    denom = 1 - skew * sr + (kurtosis - 1) / 4 * sr**2
    if not denom > 0:  # moments so extreme the normal approximation breaks: no evidence either way
        return float("nan")
    # math.erfc is the standard normal CDF without scipy's per-call overhead (same values)
    return 0.5 * math.erfc(-((sr - sr0) * math.sqrt(n_obs - 1) / math.sqrt(denom)) / math.sqrt(2))


@dataclass(frozen=True)
class DeflatedSharpe:
    dsr: float  # P(true Sharpe > 0) after deflation
    psr: float  # the same against 0, with no deflation (what a single trial would claim)
    sharpe: float  # per observation
    expected_max_sharpe: float  # SR0, per observation
    n_trials: int
    sharpe_variance: float  # V[SR_n] across trials, per observation
    n_obs: int
    skew: float
    kurtosis: float  # non-excess (3 for a normal)

    def as_dict(self, periods_per_year: float | None = None) -> dict[str, float]:
        out = {k: float(v) for k, v in asdict(self).items()}
        if periods_per_year:
            scale = math.sqrt(periods_per_year)
            out["sharpe_annual"] = self.sharpe * scale
            out["expected_max_sharpe_annual"] = self.expected_max_sharpe * scale
        return out


def moments(returns: np.ndarray) -> tuple[float, float]:
    """(skewness, non-excess kurtosis) as scipy.stats.skew/kurtosis compute them (biased sample
    moments), 0 and 3 for a constant series. Plain numpy: scipy's per-call overhead was 25 ms."""
    r = np.asarray(returns, dtype="float64")
    if len(r) < 3:
        return 0.0, 3.0
    d = r - r.mean()
    m2 = float(np.mean(d**2))
    if m2 <= 1e-30:
        return 0.0, 3.0
    return float(np.mean(d**3) / m2**1.5), float(np.mean(d**4) / m2**2)


def deflated_sharpe(returns: np.ndarray, n_trials: int, sharpe_variance: float,
                    n_obs: int | None = None) -> DeflatedSharpe:
    """DSR of the selected trial's `returns`. `n_obs` overrides len(returns) where returns overlap
    (a horizon of h bars gives about len/h independent observations)."""
    returns = np.asarray(returns, dtype="float64")
    sr = sharpe(returns)
    skew, kurt = moments(returns)
    t = int(n_obs if n_obs is not None else len(returns))
    sr0 = expected_max_sharpe(n_trials, sharpe_variance)
    return DeflatedSharpe(dsr=probabilistic_sharpe(sr, sr0, t, skew, kurt),
                          psr=probabilistic_sharpe(sr, 0.0, t, skew, kurt), sharpe=sr,
                          expected_max_sharpe=sr0, n_trials=int(n_trials),
                          sharpe_variance=float(sharpe_variance), n_obs=t, skew=skew, kurtosis=kurt)
