"""The tick rule of a TrainingSchedule (nova.ticks): cron in a time zone, DST gaps and overlaps,
missed ticks and starting deadlines, with croniter doing the cron arithmetic."""

from __future__ import annotations

import datetime as dt
from itertools import islice

import pytest

from nova.ticks import BadSchedule, check, decide, ticks

UTC = dt.UTC


def at(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def hhmm(values) -> list[str]:
    return [v.strftime("%m-%d %H:%M") for v in values]


def test_nothing_before_the_first_tick_and_a_new_schedule_never_runs_the_past():
    created = at(2026, 5, 4, 10, 0, 30)
    d = decide("* * * * *", "UTC", None, created, at(2026, 5, 4, 10, 0, 59), None)
    assert d.run is None and d.handled is None and d.skipped == 0 and d.next == at(2026, 5, 4, 10, 1)
    d = decide("0 2 * * *", "UTC", None, created, at(2026, 5, 4, 10, 5), None)
    assert d.run is None and d.next == at(2026, 5, 5, 2)  # 02:00 today was before the schedule existed


def test_a_due_tick_runs_once_then_waits_for_the_next():
    d = decide("*/5 * * * *", "UTC", None, at(2026, 5, 4, 10, 1), at(2026, 5, 4, 10, 5, 2), None)
    assert (d.run, d.handled, d.skipped, d.next) == (at(2026, 5, 4, 10, 5), at(2026, 5, 4, 10, 5), 0,
                                                     at(2026, 5, 4, 10, 10))
    again = decide("*/5 * * * *", "UTC", d.handled, at(2026, 5, 4, 10, 1), at(2026, 5, 4, 10, 7), None)
    assert again.run is None and again.skipped == 0


def test_missed_ticks_run_the_most_recent_once_and_count_the_others():
    # operator down from 10:04 to 10:31: ticks 10:05 .. 10:30 were missed
    d = decide("*/5 * * * *", "UTC", at(2026, 5, 4, 10, 0), at(2026, 5, 1), at(2026, 5, 4, 10, 31), None)
    assert d.run == at(2026, 5, 4, 10, 30) and d.skipped == 5 and "5 older missed" in (d.reason or "")


def test_starting_deadline_skips_a_tick_missed_by_more_than_it():
    last, created = at(2026, 5, 4, 10, 0), at(2026, 5, 1)
    within = decide("*/5 * * * *", "UTC", last, created, at(2026, 5, 4, 10, 5, 50), 60)
    assert within.run == at(2026, 5, 4, 10, 5) and within.skipped == 0
    late = decide("*/5 * * * *", "UTC", last, created, at(2026, 5, 4, 10, 16, 30), 60)
    assert late.run is None and late.handled == at(2026, 5, 4, 10, 15) and late.skipped == 3
    assert "startingDeadlineSeconds (60)" in (late.reason or "")
    # handled: the next decision does not count them again
    after = decide("*/5 * * * *", "UTC", late.handled, created, at(2026, 5, 4, 10, 17), 60)
    assert after.run is None and after.skipped == 0 and after.next == at(2026, 5, 4, 10, 20)


def test_very_many_missed_ticks_are_counted_up_to_a_cap_without_iterating_forever():
    d = decide("* * * * *", "UTC", at(2020, 1, 1), at(2020, 1, 1), at(2026, 5, 4, 10, 0, 30), None)
    assert d.run == at(2026, 5, 4, 10, 0) and d.skipped >= 9_999 and d.next == at(2026, 5, 4, 10, 1)


def test_fields_are_read_in_the_schedules_time_zone():
    # 09:30 on weekdays in New York is 13:30 UTC in summer (EDT) and 14:30 in winter (EST)
    summer = decide("30 9 * * 1-5", "America/New_York", None, at(2026, 7, 3, 0), at(2026, 7, 3, 13, 31), None)
    assert summer.run == at(2026, 7, 3, 13, 30) and summer.next == at(2026, 7, 6, 13, 30)  # Fri, then Mon
    winter = decide("30 9 * * 1-5", "America/New_York", None, at(2026, 1, 5, 0), at(2026, 1, 5, 14, 31), None)
    assert winter.run == at(2026, 1, 5, 14, 30)


def test_dst_gap_a_wall_time_that_does_not_exist_runs_at_the_jump_once():
    # Europe/Berlin, 29 March 2026: 02:00 CET -> 03:00 CEST; 02:30 does not exist that night
    got = hhmm(islice(ticks("30 2 * * *", "Europe/Berlin", at(2026, 3, 27, 12)), 4))
    assert got == ["03-28 01:30", "03-29 01:00", "03-30 00:30", "03-31 00:30"]  # 01:00 UTC = 03:00 CEST


def test_dst_overlap_a_fixed_hour_schedule_runs_once():
    # Europe/Berlin, 25 October 2026: 03:00 CEST -> 02:00 CET; 02:30 happens twice
    got = hhmm(islice(ticks("30 2 * * *", "Europe/Berlin", at(2026, 10, 23, 12)), 3))
    assert got == ["10-24 00:30", "10-25 00:30", "10-26 01:30"]
    # started between the two passes: the second is not a new tick either
    assert hhmm(islice(ticks("30 2 * * *", "Europe/Berlin", at(2026, 10, 25, 0, 45)), 1)) == ["10-26 01:30"]


def test_dst_overlap_an_hourly_schedule_follows_real_time():
    got = hhmm(islice(ticks("0 * * * *", "Europe/Berlin", at(2026, 10, 24, 23, 30)), 4))
    assert got == ["10-25 00:00", "10-25 01:00", "10-25 02:00", "10-25 03:00"]  # 02:00 CEST, 02:00 CET, ...


def test_a_deadline_after_dst_is_measured_in_real_seconds():
    # the 03:00 CEST tick of the gap night (01:00 UTC), checked 50 s later in real time
    d = decide("30 2 * * *", "Europe/Berlin", at(2026, 3, 28, 1, 30), at(2026, 3, 1), at(2026, 3, 29, 1, 0, 50), 60)
    assert d.run == at(2026, 3, 29, 1, 0)


@pytest.mark.parametrize("expr, tz, field", [("61 * * * *", "UTC", "spec.schedule"),
                                              ("* * *", "UTC", "spec.schedule"),
                                              ("0 2 * * mon", "Mars/Olympus", "spec.timeZone")])
def test_a_bad_schedule_names_the_field(expr, tz, field):
    with pytest.raises(BadSchedule, match=field):
        check(expr, tz)
