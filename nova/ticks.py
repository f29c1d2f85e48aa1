"""The tick rule of a TrainingSchedule: given its cron expression and time zone, the last tick it
handled, now and its starting deadline, which tick to run now (if any) and how many were skipped.
Pure (time is an argument), so every cron edge case is a unit test.

- Missed ticks (operator down, or a Forbid schedule whose run was still active): only the most
  recent one runs, the older ones are counted as skipped, as Kubernetes' CronJob does. With a
  starting deadline, a most recent tick older than it is skipped too.
- Time zones are IANA names (zoneinfo); the cron fields are read in local wall time.
- DST gap (spring forward): a tick at a wall time that does not exist runs at the jump (02:30 on
  the night clocks go from 02:00 to 03:00 runs at 03:00), once.
- DST overlap (fall back): a schedule at fixed hours runs once, at the first occurrence of the wall
  time; one whose hour field is `*` (hourly, every N minutes) follows real time and runs in both
  passes of the repeated hour, as cron does.

Only the operator imports this module (croniter is in its extra)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, CroniterNotAlphaError, croniter

from nova.errors import SpecError

MAX_COUNTED = 10_000  # missed ticks counted one by one; beyond, the count says "at least"


class BadSchedule(SpecError):
    """A cron expression or time zone that cannot be read."""


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadSchedule(f"spec.timeZone {name!r} is not an IANA time zone (e.g. UTC, Europe/Berlin, "
                          f"America/New_York)") from None


def check(expr: str, tz: str) -> None:
    """Raise BadSchedule naming the field when the schedule cannot be read."""
    zone(tz)
    try:
        croniter(expr, dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
    except (CroniterBadCronError, CroniterNotAlphaError, CroniterBadDateError, ValueError, KeyError) as exc:
        raise BadSchedule(f"spec.schedule {expr!r} is not a cron expression ({exc}); five fields "
                          f"'minute hour day-of-month month day-of-week', e.g. '0 2 * * 1-5', or @daily") from None


def _fixed_hours(expr: str) -> bool:
    fields = expr.split()
    if len(fields) < 2:  # a macro: @hourly follows real time, the others are at fixed hours
        return expr.strip() != "@hourly"
    return fields[1] != "*"


def ticks(expr: str, tz: str, after: dt.datetime) -> Iterator[dt.datetime]:
    """The ticks strictly after `after`, in UTC, with the DST rules of this module."""
    check(expr, tz)
    local = zone(tz)
    it = croniter(expr, after.astimezone(local))
    once = _fixed_hours(expr)
    last_wall: dt.datetime | None = None
    while True:
        tick = it.get_next(dt.datetime).astimezone(dt.UTC)
        wall = tick.astimezone(local)
        naive = wall.replace(tzinfo=None)
        if once and naive == last_wall:
            continue  # the repeated hour's second pass of a fixed-hour schedule
        if once and wall.replace(fold=0).astimezone(dt.UTC) != tick:
            continue  # the same: the second occurrence of an ambiguous wall time
        last_wall = naive
        yield tick


@dataclass(frozen=True)
class TickDecision:
    """`run`: the tick to create a run for now (None: nothing to do). `handled`: the newest tick
    this decision disposes of (run or skipped), to store as the schedule's last tick. `skipped`:
    ticks skipped by this decision. `next`: the next tick after now."""

    run: dt.datetime | None
    handled: dt.datetime | None
    skipped: int
    next: dt.datetime
    reason: str | None = None


def decide(expr: str, tz: str, last: dt.datetime | None, created: dt.datetime, now: dt.datetime,
           deadline_seconds: int | None) -> TickDecision:
    """Which tick to run now. `last` is the newest tick already handled (None before the first:
    the schedule's creation time is the start, so a new schedule never runs ticks from the past)."""
    start = last or created
    recent: dt.datetime | None = None
    count = 0
    gen = ticks(expr, tz, start)
    upcoming = next(gen)
    while upcoming <= now:
        recent, count = upcoming, count + 1
        if count >= MAX_COUNTED:  # jump: the newest tick before now, counted as "at least"
            recent = _newest_before(expr, tz, now, recent)
            upcoming = next(ticks(expr, tz, now))
            break
        upcoming = next(gen)
    if recent is None:
        return TickDecision(run=None, handled=None, skipped=0, next=upcoming)
    late = (now - recent).total_seconds()
    if deadline_seconds is not None and late > deadline_seconds:
        return TickDecision(run=None, handled=recent, skipped=count, next=upcoming,
                            reason=f"missed the tick of {recent.isoformat()} by {late:.0f}s, more than "
                                   f"startingDeadlineSeconds ({deadline_seconds})")
    reason = f"{count - 1} older missed tick(s) skipped" if count > 1 else None
    return TickDecision(run=recent, handled=recent, skipped=count - 1, next=upcoming, reason=reason)


def _newest_before(expr: str, tz: str, now: dt.datetime, floor: dt.datetime) -> dt.datetime:
    """The newest tick at or before `now` (far past `floor`), found backwards."""
    prev = croniter(expr, now.astimezone(zone(tz)) + dt.timedelta(microseconds=1)).get_prev(dt.datetime)
    return max(floor, prev.astimezone(dt.UTC))
