"""The one validated shape of market data that every source returns.

Policy (stated once, applied to every source):
- index: tz-naive `DatetimeIndex` named `timestamp`, sorted ascending; duplicate timestamps keep the
  last row (a re-delivered bar replaces the earlier one);
- columns: `open, high, low, close, volume` as float64;
- prices must be finite and > 0, volume finite and >= 0: infinite or non-positive values are an error
  naming the symbol, the column and the first bad timestamp (they mean a broken feed, not a gap);
- rows with a missing (NaN) price are dropped, never filled: filling would invent trades. If more
  than 5% of rows are missing the data is refused instead. A missing volume becomes 0;
- high/low are widened to contain open and close (feeds round them independently).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from nova.errors import DataError

OHLCV = ["open", "high", "low", "close", "volume"]
PRICES = ["open", "high", "low", "close"]
MAX_MISSING_FRACTION = 0.05
TIME_COLUMNS = ("timestamp", "date", "datetime", "time")

log = logging.getLogger(__name__)


def _to_timestamp_index(df: pd.DataFrame, where: str) -> pd.DataFrame:
    if not isinstance(df.index, pd.DatetimeIndex):
        time_col = next((c for c in TIME_COLUMNS if c in df.columns), None)
        if time_col is None:
            raise DataError(f"{where}: no time column; expected one of {list(TIME_COLUMNS)} "
                            f"(found columns {list(df.columns)[:12]})")
        try:
            stamps = pd.to_datetime(df[time_col], utc=True, format="mixed")
        except (ValueError, TypeError) as exc:
            raise DataError(f"{where}: column '{time_col}' has values that are not timestamps ({exc})") from None
        df = df.drop(columns=[time_col]).set_index(stamps.dt.tz_convert(None))
    elif df.index.tz is not None:
        df = df.tz_convert(None)
    df.index.name = "timestamp"
    return df


def validate_bars(raw: pd.DataFrame, symbol: str, origin: str) -> pd.DataFrame:
    """Return the validated frame or raise DataError naming `symbol` and `origin` (file, table...)."""
    where = f"{symbol} ({origin})"
    if raw is None or len(raw) == 0:
        raise DataError(f"{where}: no rows")
    df = raw.rename(columns=lambda c: str(c).strip().lower().replace(" ", "_"))
    df = _to_timestamp_index(df, where)
    missing = [c for c in OHLCV if c not in df.columns]
    if missing:
        raise DataError(f"{where}: missing column(s) {missing}; need {OHLCV} and a time column "
                        f"(found {list(df.columns)[:12]})")
    df = df[OHLCV]
    try:
        df = df.apply(pd.to_numeric, errors="raise").astype("float64")
    except (ValueError, TypeError) as exc:
        raise DataError(f"{where}: non-numeric OHLCV values ({exc})") from None
    if pd.isna(df.index).any():
        raise DataError(f"{where}: {int(pd.isna(df.index).sum())} row(s) with an empty timestamp")

    if not df.index.is_monotonic_increasing:
        df = df.sort_index(kind="stable")
    duplicated = df.index.duplicated(keep="last")
    if duplicated.any():
        log.warning("%s: %d duplicate timestamp(s); kept the last of each", where, int(duplicated.sum()))
        df = df[~duplicated]

    values = df[PRICES].to_numpy()
    bad_inf = np.isinf(values) | np.isinf(df["volume"].to_numpy())[:, None]
    if bad_inf.any():
        row = int(np.argmax(bad_inf.any(axis=1)))
        raise DataError(f"{where}: infinite value at {df.index[row]}; fix or remove that row")
    nan_rows = np.isnan(values).any(axis=1)
    if nan_rows.mean() > MAX_MISSING_FRACTION:
        raise DataError(f"{where}: {nan_rows.mean():.0%} of rows have a missing price "
                        f"(more than {MAX_MISSING_FRACTION:.0%}); the data looks broken")
    if nan_rows.any():
        log.info("%s: dropped %d row(s) with a missing price", where, int(nan_rows.sum()))
        df = df[~nan_rows]
    df = df.assign(volume=df["volume"].fillna(0.0))
    nonpositive = (df[PRICES] <= 0).any(axis=1).to_numpy()
    if nonpositive.any():
        row = int(np.argmax(nonpositive))
        raise DataError(f"{where}: non-positive price at {df.index[row]}; prices must be > 0")
    if (df["volume"] < 0).any():
        row = int(np.argmax((df["volume"] < 0).to_numpy()))
        raise DataError(f"{where}: negative volume at {df.index[row]}")
    df = df.assign(high=df[PRICES].max(axis=1), low=df[PRICES].min(axis=1))
    if df.empty:
        raise DataError(f"{where}: no valid rows left after validation")
    return df


def clip_range(df: pd.DataFrame, symbol: str, start, end, origin: str) -> pd.DataFrame:
    """Keep [start, end] (inclusive days); an empty window is an error naming the range we do have."""
    out = df
    if start is not None:
        out = out[out.index >= pd.Timestamp(start)]
    if end is not None:
        out = out[out.index < pd.Timestamp(end) + pd.Timedelta(days=1)]
    if out.empty:
        raise DataError(f"{symbol} ({origin}): no bars between {start or 'the start'} and {end or 'the end'}; "
                        f"the data covers {df.index[0].date()} to {df.index[-1].date()}")
    return out
