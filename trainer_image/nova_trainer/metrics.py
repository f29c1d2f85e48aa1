"""Fold metrics: classification quality and what a simple directional strategy would have earned."""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

from nova.intervals import bars_per_year


def positions(pred: np.ndarray, kind: str) -> np.ndarray:
    """Long (+1) when the model expects a rise, short (-1) otherwise (0 for a zero return forecast)."""
    signal = np.where(pred > 0.5, 1, -1) if kind == "direction" else np.sign(pred)
    return np.asarray(signal, dtype="int8")


def strategy_returns(pred: np.ndarray, fwd_return: np.ndarray, kind: str) -> np.ndarray:
    """The position held for the horizon times the forward return."""
    return positions(pred, kind).astype("float64") * fwd_return


def sharpe_ratio(returns: np.ndarray, bars_per_year: int, horizon: int = 1) -> float:
    std = float(np.std(returns, ddof=1)) if len(returns) > 1 else 0.0
    if std == 0.0 or not np.isfinite(std):
        return 0.0
    return float(np.mean(returns) / std * math.sqrt(bars_per_year / horizon))


def fold_metrics(pred: np.ndarray, label: np.ndarray, fwd_return: np.ndarray, kind: str,
                 interval: str = "1d", horizon: int = 1, cost_bps: float = 0.0) -> dict[str, float]:
    from nova_trainer.evaluation.costs import net_returns, turnover

    out: dict[str, float] = {}
    pos = positions(pred, kind)
    strat = pos.astype("float64") * fwd_return
    per_year = bars_per_year(interval)
    out["sharpe"] = sharpe_ratio(strat, per_year, horizon)
    out["sharpe_net"] = sharpe_ratio(net_returns(strat, pos, [len(pos)], cost_bps), per_year, horizon)
    out["turnover"] = float(np.mean(turnover(pos, [len(pos)]))) if len(pos) else 0.0
    out["buy_hold_sharpe"] = sharpe_ratio(np.asarray(fwd_return, dtype="float64"), per_year, horizon)
    out["hit_rate"] = float(np.mean(strat > 0))
    if kind == "direction":
        both = len(np.unique(label)) == 2
        out["auc"] = float(roc_auc_score(label, pred)) if both else 0.5
        out["logloss"] = float(log_loss(label, np.clip(pred, 1e-7, 1 - 1e-7), labels=[0, 1]))
        out["accuracy"] = float(accuracy_score(label, pred > 0.5))
    else:
        out["rmse"] = float(np.sqrt(np.mean((pred - label) ** 2)))
        out["accuracy"] = float(np.mean(np.sign(pred) == np.sign(label)))
    return out


def summarize(folds: list[dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over folds."""
    keys = folds[0].keys() if folds else []
    return {k: float(np.mean([f[k] for f in folds])) for k in keys}
