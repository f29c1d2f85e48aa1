"""The one validated shape of market data that every source returns.

Policy (stated once, applied to every source):
- index: tz-naive `DatetimeIndex` named `timestamp`, sorted ascending; duplicate timestamps keep the
  last row (a re-delivered bar replaces the earlier one);
- columns: `open, high, low, close, volume` as float64;
- prices must be finite and > 0, volume finite and >= 0: infinite or non-positive values are an error
  naming the symbol, the column and the first bad timestamp (they mean a broken feed, not a gap);
- rows with a missing (NaN) price are dropped, never filled: filling would invent trades. If more
  than 5% of rows are missing the data is refused instead. A missing volume becomes 0;
- high/low are widened to contain open and close (feeds round them independently);
- the time column is parsed as a whole (`timestamps.py`): one format per column, day-first dates
  inferred or refused as ambiguous, daily bars dated by their local date;
- `Adj Close` (Yahoo-style exports): with `data.adjust: auto` (default) OHLC are scaled by
  adj_close / close when the column is there, and the log says so; `adjClose` requires it, `none`
  ignores it;
- a one-bar close move by a ratio near 2, 3, 4, 5, 10 or their inverse gets a warning naming the
  symbol and the date (an unadjusted split looks like that);
- `data.columns: close`: a close-only series; open, high and low are set to the close and volume is
  NaN, so only the features computed from the close are kept (the dataset says which);
- a bad value is named by its file line (header = line 1) and column where the source has lines.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from nova.errors import DataError
from nova_trainer.data.timestamps import Locate, parse_times

OHLCV = ["open", "high", "low", "close", "volume"]
PRICES = ["open", "high", "low", "close"]
MAX_MISSING_FRACTION = 0.05
TIME_COLUMNS = ("timestamp", "date", "datetime", "time")
ADJ_COLUMNS = ("adj_close", "adjusted_close", "adjclose")
LINE_OFFSET_ATTR = "nova_line_offset"  # set by a CSV reader: file line of the first data row
SPLIT_RATIOS = (2.0, 3.0, 4.0, 5.0, 10.0)
SPLIT_TOLERANCE = 0.04

log = logging.getLogger(__name__)


def _locator(raw: pd.DataFrame) -> Locate:
    """Row position -> 'line N' for files with lines (CSV), else 'row N' (1-based)."""
    offset = raw.attrs.get(LINE_OFFSET_ATTR)
    index = raw.index
    if offset is not None and pd.api.types.is_integer_dtype(index.dtype):
        return lambda row: f"line {int(index[row]) + offset}"
    return lambda row: f"row {row + 1}"


def _to_timestamp_index(df: pd.DataFrame, where: str, daily: bool, date_format: str | None,
                        locate: Locate, timezone: str | None = None) -> pd.DataFrame:
    if not isinstance(df.index, pd.DatetimeIndex):
        time_col = next((c for c in TIME_COLUMNS if c in df.columns), None)
        if time_col is None:
            raise DataError(f"{where}: no time column; expected one of {list(TIME_COLUMNS)} "
                            f"(found columns {list(df.columns)[:12]})")
        stamps = parse_times(df[time_col], where, time_col, daily, date_format, locate, timezone)
        df = df.drop(columns=[time_col]).set_index(stamps)
    elif df.index.tz is not None:
        if daily and timezone:
            df = df.tz_convert(timezone)
        df = df.tz_localize(None) if daily else df.tz_convert(None)
    if daily and isinstance(df.index, pd.DatetimeIndex):
        df.index = df.index.normalize()
    df.index.name = "timestamp"
    return df


def _numeric(df: pd.DataFrame, where: str, locate: Locate, columns: list[str]) -> pd.DataFrame:
    """float64 columns, or an error naming the line and column of the first non-number."""
    out = {}
    for col in columns:
        values = df[col]
        if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
            out[col] = values.astype("float64")
            continue
        text = values.astype("string").str.strip().str.replace(",", "", regex=False)
        parsed = pd.to_numeric(text, errors="coerce")
        bad = (parsed.isna() & text.notna() & text.ne("")).to_numpy()
        if bad.any():
            row = int(np.argmax(bad))
            raise DataError(f"{where}: {locate(row)}, column '{col}': '{values.iloc[row]}' is not a number")
        out[col] = parsed.astype("float64")
    return pd.DataFrame(out, index=df.index)


def _adjust(df: pd.DataFrame, where: str, adjust: str, locate: Locate) -> pd.DataFrame:
    adj_col = next((c for c in ADJ_COLUMNS if c in df.columns), None)
    if adjust == "adjClose" and adj_col is None:
        raise DataError(f"{where}: data.adjust is 'adjClose' but there is no Adj Close column "
                        f"(found {list(df.columns)[:12]}); use data.adjust: none for prices as they are")
    if adj_col is None:
        return df
    if adjust == "none":
        log.info("%s: column '%s' ignored (data.adjust: none)", where, adj_col)
        return df
    adj = _numeric(df, where, locate, [adj_col])[adj_col]
    factor = adj / df["close"]
    for col in PRICES:
        df[col] = df[col] * factor
    changed = float(np.nanmax(np.abs(factor.to_numpy() - 1.0))) if len(factor) else 0.0
    log.info("%s: OHLC adjusted by %s / close (data.adjust: %s; largest change %.1f%%)",
             where, adj_col, adjust, 100 * changed)
    return df


def warn_split_like_jumps(df: pd.DataFrame, where: str) -> list[str]:
    """Warn about one-bar close moves by a split-like ratio; returns the dates warned about."""
    ratio = (df["close"] / df["close"].shift(1)).to_numpy()[1:]
    dates = []
    for k in SPLIT_RATIOS:
        for target, label in ((k, f"{k:g}x up"), (1 / k, f"1/{k:g} down")):
            hits = np.flatnonzero(np.abs(ratio / target - 1.0) < SPLIT_TOLERANCE)
            for i in hits:
                date = df.index[i + 1]
                dates.append(str(date.date()))
                log.warning("%s: close moves %s (x%.3f) on %s, like an unadjusted split; check the data or "
                            "use an Adj Close column (data.adjust)", where, label, ratio[i], date.date())
    return sorted(dates)


def validate_bars(raw: pd.DataFrame, symbol: str, origin: str, interval: str = "1d",
                  date_format: str | None = None, adjust: str = "auto", columns: str = "ohlcv",
                  timezone: str | None = None) -> pd.DataFrame:
    """Return the validated frame or raise DataError naming `symbol` and `origin` (file, table...)."""
    where = f"{symbol} ({origin})"
    if raw is None or len(raw) == 0:
        raise DataError(f"{where}: no rows")
    locate = _locator(raw)
    df = raw.rename(columns=lambda c: str(c).strip().lower().replace(" ", "_"))
    df = _to_timestamp_index(df, where, interval == "1d", date_format, locate, timezone)
    need = ["close"] if columns == "close" else OHLCV
    missing = [c for c in need if c not in df.columns]
    if missing:
        hint = " (or set data.columns: close for a close-only series)" if "close" in df.columns else ""
        raise DataError(f"{where}: missing column(s) {missing}; need {need} and a time column{hint} "
                        f"(found {list(df.columns)[:12]})")
    if columns == "close":
        close = _numeric(df, where, locate, ["close"])["close"]
        numeric = pd.DataFrame({"open": close, "high": close, "low": close, "close": close,
                                "volume": np.nan}, index=df.index)
        for col in ADJ_COLUMNS:
            if col in df.columns:
                numeric[col] = df[col]
    else:
        numeric = _numeric(df, where, locate, OHLCV)
        for col in ADJ_COLUMNS:
            if col in df.columns:
                numeric[col] = df[col]
    df = _adjust(numeric, where, adjust, locate)[OHLCV]
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
    if columns != "close":
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
    """Keep [start, end] (inclusive days); an empty window is an error naming the range we do have.
    Split-like jumps are looked for in the window kept (the bars the run will use)."""
    out = df
    if start is not None:
        out = out[out.index >= pd.Timestamp(start)]
    if end is not None:
        out = out[out.index < pd.Timestamp(end) + pd.Timedelta(days=1)]
    if out.empty:
        raise DataError(f"{symbol} ({origin}): no bars between {start or 'the start'} and {end or 'the end'}; "
                        f"the data covers {df.index[0].date()} to {df.index[-1].date()}")
    warn_split_like_jumps(out, f"{symbol} ({origin})")
    return out
