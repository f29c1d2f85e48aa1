"""The time column of a bar file, parsed as a whole (never one value at a time).

- A format is decided once per column: `data.dateFormat` when given, else ISO 8601, else a numeric
  day/month/year column is read day-first if some first field exceeds 12, month-first if some
  second field does, and refused as ambiguous when neither does (05/02/2005: 5 February or May 2?).
- Offsets (`+09:00`, `Z`): daily bars are dated by their local date (a Tokyo close at
  2005-01-13T00:00+09:00 is the bar of 13 January, not 12 January in UTC); intraday bars keep their
  instant, stored as naive UTC.
- A value that does not parse is an error naming its line and column.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pandas as pd
from pandas.tseries.api import guess_datetime_format

from nova.errors import DataError

OFFSET_RE = re.compile(r"(?:Z|[+-]\d{2}:?\d{2})$")
NUMERIC_DATE_RE = re.compile(r"^(\d{1,2})([/.-])(\d{1,2})\2(\d{4}|\d{2})(.*)$")

Locate = Callable[[int], str]  # row position -> "line 33" (or "row 32" where there are no lines)


def _numeric_date_format(values: pd.Series, where: str, column: str) -> str | None:
    """%d/%m/%Y or %m/%d/%Y for a column of numeric dates, None if the column is not one."""
    parts = values.str.extract(NUMERIC_DATE_RE)
    if parts[0].isna().any():
        return None
    first, second = parts[0].astype(int), parts[2].astype(int)
    sep, year = parts[1].iloc[0], "%Y" if len(parts[3].iloc[0]) == 4 else "%y"
    rest = parts[4].iloc[0].strip()
    example = values.iloc[int(np.argmax((first <= 12) & (second <= 12)))]
    if (first > 12).any() and (second > 12).any():
        raise DataError(f"{where}: column '{column}' mixes day-first and month-first dates (e.g. "
                        f"'{values[first > 12].iloc[0]}' and '{values[second > 12].iloc[0]}'); fix the file")
    if (first > 12).any():
        fmt = f"%d{sep}%m{sep}{year}"
    elif (second > 12).any():
        fmt = f"%m{sep}%d{sep}{year}"
    else:
        raise DataError(
            f"{where}: column '{column}' has dates such as '{example}' that read either day-first or "
            f"month-first, and no value settles it; set data.dateFormat: '%d{sep}%m{sep}{year}' (day first) "
            f"or '%m{sep}%d{sep}{year}' (month first)")
    if rest:
        guessed = guess_datetime_format(values.iloc[0], dayfirst=fmt.startswith("%d"))
        if guessed is None:
            raise DataError(f"{where}: column '{column}': cannot tell the time format of '{values.iloc[0]}'; "
                            "set data.dateFormat")
        return guessed
    return fmt


def _first_bad(parsed: pd.Series, values: pd.Series, where: str, column: str, locate: Locate,
               fmt: str | None) -> None:
    bad = parsed.isna().to_numpy() & values.ne("").to_numpy()
    if bad.any():
        row = int(np.argmax(bad))
        how = f"format '{fmt}'" if fmt and fmt != "ISO8601" else "ISO 8601 (e.g. 2005-01-13)"
        raise DataError(f"{where}: {locate(row)}, column '{column}': '{values.iloc[row]}' is not a timestamp "
                        f"in {how}; fix the value or set data.dateFormat")


def parse_times(raw: pd.Series, where: str, column: str, daily: bool, date_format: str | None,
                locate: Locate, timezone: str | None = None) -> pd.DatetimeIndex:
    """Naive timestamps: local dates for daily bars, UTC instants for intraday ones."""
    if isinstance(raw.dtype, pd.DatetimeTZDtype):  # Parquet or timestamptz: the zone's wall clock is local
        if daily and timezone:  # a database hands instants back in its session zone: read the exchange's
            raw = raw.dt.tz_convert(timezone)
        out = raw.dt.tz_localize(None) if daily else raw.dt.tz_convert("UTC").dt.tz_localize(None)
        return pd.DatetimeIndex(out.dt.normalize() if daily else out)
    if pd.api.types.is_datetime64_dtype(raw.dtype):
        return pd.DatetimeIndex(raw.dt.normalize() if daily else raw)
    values = raw.astype("string").fillna("").str.strip()
    if values.eq("").all():
        raise DataError(f"{where}: column '{column}' is empty")
    sample = values[values.ne("")]
    aware = sample.str.contains(OFFSET_RE).any()
    if aware and daily:
        values = values.str.replace(OFFSET_RE, "", regex=True).str.strip()  # local wall time = local date
        sample = values[values.ne("")]
    fmt = date_format or _numeric_date_format(sample, where, column) or "ISO8601"
    utc = aware and not daily
    parsed = pd.to_datetime(values.where(values.ne(""), None), format=fmt, errors="coerce", utc=utc)
    if fmt == "ISO8601" and parsed.isna().sum() > values.eq("").sum() and not date_format:
        guessed = guess_datetime_format(sample.iloc[0])
        if guessed:  # one format for the whole column, from its first value
            fmt = guessed
            parsed = pd.to_datetime(values.where(values.ne(""), None), format=fmt, errors="coerce", utc=utc)
    _first_bad(parsed, values, where, column, locate, fmt)
    if utc:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    index = pd.DatetimeIndex(parsed)
    return index.normalize() if daily else index
