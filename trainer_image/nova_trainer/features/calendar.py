"""Calendar: position of the bar's own timestamp in the week, month and year (and day, for intraday
bars), as sine/cosine pairs so December sits next to January. Uses only the bar's own timestamp and
the previous one, both known when the bar closes."""

from __future__ import annotations

import zoneinfo

import numpy as np
import pandas as pd

from nova.errors import DataError

from .base import Bars, Group, feature

F = "calendar"
TAU = 2.0 * np.pi


def _cycle(codes: np.ndarray, phases: np.ndarray, key: str) -> dict[str, np.ndarray]:
    """sin/cos of 2*pi*phase, looked up by integer code: a calendar field takes few distinct values,
    and a table lookup is ~20x cheaper than np.sin over a million rows."""
    return {f"{key}_sin": np.sin(TAU * phases)[codes], f"{key}_cos": np.cos(TAU * phases)[codes]}


def _cyclic(b: Bars) -> dict[str, np.ndarray]:
    # Calendar fields are computed once per distinct day (the index is sorted, so the days come in
    # runs) with numpy datetime64 arithmetic, then spread back to the rows.
    stamps = b.index.to_numpy()
    day_rows = stamps.astype("datetime64[D]")
    new_day = np.empty(len(day_rows), dtype=bool)
    new_day[:1] = True
    np.not_equal(day_rows[1:], day_rows[:-1], out=new_day[1:])
    row_to_day = np.cumsum(new_day) - 1
    day = day_rows[new_day]
    month = day.astype("datetime64[M]")
    year = month.astype("datetime64[Y]")
    month_start = month.astype("datetime64[D]")
    days_in_month = ((month + np.timedelta64(1, "M")).astype("datetime64[D]") - month_start).view(np.int64)
    dom0 = (day - month_start).view(np.int64)  # 0-based day of month
    year_start = year.astype("datetime64[D]")
    leap = ((year + np.timedelta64(1, "Y")).astype("datetime64[D]") - year_start).view(np.int64) - 365
    doy0 = (day - year_start).view(np.int64)
    minute = ((stamps - day_rows.astype(stamps.dtype)) // np.timedelta64(1, "m")).astype(np.int64)

    dom_phase = np.arange(31)[:, None] / np.arange(28, 32)[None, :]  # [day0, days_in_month - 28]
    doy_phase = np.arange(366)[:, None] / np.array([365.0, 366.0])[None, :]
    out = {
        **_cycle(((day.view(np.int64) + 3) % 7)[row_to_day], np.arange(7) / 7.0, "dow"),  # 1970-01-01: Thu
        **_cycle((dom0 * 4 + (days_in_month - 28))[row_to_day], dom_phase.ravel(), "dom"),
        **_cycle((month.view(np.int64) % 12)[row_to_day], np.arange(12) / 12.0, "month"),
        **_cycle((doy0 * 2 + leap)[row_to_day], doy_phase.ravel(), "doy"),
        **_cycle(minute, np.arange(1440) / 1440.0, "hour"),
    }
    out["days_to_month_end"] = (days_in_month - 1 - dom0).astype(np.float64)[row_to_day]
    return out


def local_calendar(index: pd.DatetimeIndex, timezone: str) -> dict[str, np.ndarray]:
    """The cyclic calendar features of UTC instants, read on the exchange's clock (`data.timezone`)."""
    try:
        zone = zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise DataError(f"data.timezone '{timezone}' is not an IANA time zone (e.g. America/New_York)") from None
    local = index.tz_localize("UTC").tz_convert(zone).tz_localize(None)
    frame = pd.DataFrame({c: np.zeros(len(index)) for c in ("open", "high", "low", "close", "volume")},
                         index=local)
    return _cyclic(Bars(frame))


def _bar_gap(b: Bars) -> dict[str, np.ndarray]:
    out = np.full(b.n, np.nan)
    out[1:] = (b.index[1:] - b.index[:-1]).total_seconds().to_numpy(np.float64) / 86_400.0
    return {"bar_gap_days_1": out}


_CYCLES = {"dow": "day of week", "dom": "day of month", "month": "month of year", "doy": "day of year",
           "hour": "time of day (constant on daily bars)"}
_TRIG = {"sin": "sine", "cos": "cosine"}

GROUPS: list[Group] = [
    Group((*(feature(f"{key}_{fn}", F, None, None, 0, f"{_TRIG[fn]} of the {text} phase")
             for key, text in _CYCLES.items() for fn in ("sin", "cos")),
           feature("days_to_month_end", F, None, None, 0, "calendar days left in the bar's month")), _cyclic),
    Group((feature("bar_gap_days_1", F, 1, None, 1, "days since the previous bar (weekends, holidays, halts)"),),
          _bar_gap),
]
