"""Daily bars with a pattern a tuned model learns and a one-split model cannot: the sign of each
day's return follows the weekday (up on Mon, Wed, Fri; down on Tue, Thu) 95% of the time. The
calendar features (dow_sin, dow_cos) see it; one split on one of them separates at most one weekday
from the others, so a stump scores clearly worse. Used where a test needs one model to be better
than another for a reason, not by luck of the draw."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

UP_DAYS = {0, 2, 4}


def learnable_bars(n: int = 1100, seed: int = 3, start: str = "2019-01-07") -> pd.DataFrame:
    days = pd.bdate_range(start, periods=n)
    rng = np.random.default_rng(seed)
    sign = np.where([d.weekday() in UP_DAYS for d in days], 1.0, -1.0) * np.where(rng.random(n) < 0.95, 1, -1)
    ret = sign * np.abs(rng.normal(0.008, 0.004, n))
    close = 50.0 * np.exp(np.cumsum(ret))
    open_ = np.concatenate([[50.0], close[:-1]])
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.002, n)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.002, n)))
    volume = np.round(rng.uniform(1e5, 1e6, n))
    return pd.DataFrame({"date": days.strftime("%Y-%m-%d"), "open": open_, "high": high, "low": low,
                         "close": close, "volume": volume})


def write_learnable(folder: Path, symbol: str = "AAA", **kw) -> Path:
    """`<folder>/<symbol>.csv`, for data.source file with data.uri: <folder>."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{symbol}.csv"
    learnable_bars(**kw).to_csv(path, index=False)
    return path
