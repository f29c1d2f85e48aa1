"""The TrainingSchedule spec (nova.schedule): its template's rolling window becomes fixed dates per run."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import ValidationError

from nova.schedule import TrainingScheduleSpec, lookback_start, resolve_window


def spec(**data):
    return TrainingScheduleSpec.model_validate({
        "schedule": "0 2 * * 1-5", "runTemplate": {"data": {"symbols": ["AAPL"], **data}}})


def test_defaults_are_those_of_a_cronjob_with_forbid():
    s = spec()
    assert (s.time_zone, s.concurrency_policy, s.suspend, s.starting_deadline_seconds) == ("UTC", "Forbid", False, None)
    assert (s.successful_runs_history_limit, s.failed_runs_history_limit, s.warm_start.top_k) == (3, 1, 10)


@pytest.mark.parametrize("end, lookback, start", [
    (dt.date(2026, 5, 4), "5y", dt.date(2021, 5, 4)),
    (dt.date(2028, 2, 29), "1y", dt.date(2027, 2, 28)),  # no 29 February: the month's last day
    (dt.date(2026, 3, 31), "1m", dt.date(2026, 2, 28)),
    (dt.date(2026, 1, 15), "2m", dt.date(2025, 11, 15)),
    (dt.date(2026, 5, 4), "2w", dt.date(2026, 4, 20)),
    (dt.date(2026, 5, 4), "10d", dt.date(2026, 4, 24)),
])
def test_lookback(end, lookback, start):
    assert lookback_start(end, lookback) == start


def test_latest_and_lookback_resolve_to_dates_on_the_runs_day():
    run = resolve_window(spec(end="latest", lookback="5y").run_template, dt.date(2026, 5, 4))
    assert (run.data.start, run.data.end) == (dt.date(2021, 5, 4), dt.date(2026, 5, 4))
    fixed = resolve_window(spec(start="2020-01-01", end="2024-01-01").run_template, dt.date(2026, 5, 4))
    assert (fixed.data.start, fixed.data.end) == (dt.date(2020, 1, 1), dt.date(2024, 1, 1))
    open_ended = resolve_window(spec(lookback="1y").run_template, dt.date(2026, 5, 4))
    assert (open_ended.data.start, open_ended.data.end) == (dt.date(2025, 5, 4), None)


@pytest.mark.parametrize("data, message", [
    ({"lookback": "5y", "start": "2020-01-01"}, "lookback or start, not both"),
    ({"lookback": "5 years"}, "String should match pattern"),
    ({"end": "yesterday"}, "String should match pattern"),
])
def test_bad_windows_are_refused_naming_the_field(data, message):
    with pytest.raises(ValidationError, match=message):
        spec(**data)


def test_the_template_keeps_a_runs_cross_field_rules():
    with pytest.raises(ValidationError, match="gap must be >= target.horizon"):
        TrainingScheduleSpec.model_validate({"schedule": "@daily", "runTemplate": {
            "data": {"symbols": ["AAPL"]}, "target": {"horizon": 10}}})


def test_a_schedules_template_refuses_a_claim_with_a_bucket_uri_like_a_run_does():
    from pydantic import ValidationError

    from nova.schedule import RollingDataSpec

    with pytest.raises(ValidationError, match="data.claimName needs data.source 'file'"):
        RollingDataSpec.model_validate({"symbols": ["AAPL"], "source": "file", "uri": "s3://b/x", "claimName": "bars"})
    assert RollingDataSpec.model_validate({"symbols": ["AAPL"], "source": "file", "uri": "bars",
                                           "claimName": "bars"}).claim_name == "bars"
