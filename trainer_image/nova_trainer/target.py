"""What the model predicts: the close `horizon` bars ahead, as a direction or a log return.

The label of row t is computed from close[t] and close[t + horizon]; the last `horizon` rows have no
label and are dropped. `walk_forward.py` uses `horizon` to keep label windows out of test windows."""

from __future__ import annotations

import numpy as np
import pandas as pd


def forward_log_return(close: pd.Series, horizon: int) -> pd.Series:
    """log(close[t+h] / close[t]); NaN where t+h is past the end."""
    return np.log(close.shift(-horizon) / close).rename(f"fwd_log_return_{horizon}")


def make_target(close: pd.Series, kind: str, horizon: int) -> pd.Series:
    fwd = forward_log_return(close, horizon)
    if kind == "return":
        return fwd.rename("target")
    if kind == "direction":
        return (fwd > 0).astype("float32").where(fwd.notna()).rename("target")
    raise ValueError(f"target.kind '{kind}' is not one of direction, return")
