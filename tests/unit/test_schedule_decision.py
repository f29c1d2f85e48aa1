"""One pass over a TrainingSchedule (nova_operator.schedule_decision.plan): which run to create,
named by its tick; warm start from the newest successful run; concurrency; history; run-now;
exactly once when the status of an earlier pass was lost."""

from __future__ import annotations

import datetime as dt

from nova.schedule import RUN_NOW_ANNOTATION, SCHEDULE_LABEL, TICK_ANNOTATION
from nova.spec import TrainingRunSpec
from nova_operator.schedule_decision import plan, run_now_name

UTC = dt.UTC
CREATED = "2026-05-04T09:00:00Z"


def schedule(status=None, annotations=None, **spec):
    body = {"schedule": "*/5 * * * *", "timeZone": "UTC",
            "runTemplate": {"data": {"symbols": ["AAPL"], "lookback": "2y", "end": "latest"}}, **spec}
    return {"kind": "TrainingSchedule", "metadata": {"name": "nightly", "namespace": "ns", "uid": "u-1",
                                                     "generation": 1, "creationTimestamp": CREATED,
                                                     "annotations": annotations or {}},
            "spec": body, "status": status or {}}


def run(name, phase=None, tick=None, done=None):
    md = {"name": name, "namespace": "ns", "labels": {SCHEDULE_LABEL: "nightly"},
          "annotations": {TICK_ANNOTATION: tick} if tick else {}, "creationTimestamp": tick or CREATED}
    return {"metadata": md, "status": {"phase": phase, **({"completionTime": done} if done else {})} if phase else {}}


def at(h, m, s=0):
    return dt.datetime(2026, 5, 4, h, m, s, tzinfo=UTC)


def test_first_tick_creates_a_run_named_by_it_with_fixed_dates_owned_by_the_schedule():
    p = plan(schedule(), [], at(9, 5, 3))
    (made,) = p.create
    assert made["metadata"]["name"] == "nightly-202605040905"
    assert made["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert made["metadata"]["labels"] == {SCHEDULE_LABEL: "nightly"}
    assert made["metadata"]["annotations"][TICK_ANNOTATION] == "2026-05-04T09:05:00Z"
    spec = TrainingRunSpec.model_validate(made["spec"])  # a valid TrainingRun
    assert (str(spec.data.start), str(spec.data.end)) == ("2024-05-04", "2026-05-04")
    assert spec.tuning.warm_start_from is None  # nothing succeeded yet
    assert p.status["lastScheduleTime"] == "2026-05-04T09:05:00Z" and p.status["active"] == ["nightly-202605040905"]
    assert p.status["nextScheduleTime"] == "2026-05-04T09:10:00Z" and p.wait_seconds == 297


def test_between_ticks_nothing_is_created():
    first = plan(schedule(), [], at(9, 5, 3))
    again = plan(schedule(status=first.status), [run("nightly-202605040905", "Running", "2026-05-04T09:05:00Z")],
                 at(9, 7))
    assert again.create == [] and again.status["activeCount"] == 1


def test_a_lost_status_does_not_make_a_second_run():
    """The operator made the run and died before writing the status: the run's own tick counts."""
    p = plan(schedule(), [run("nightly-202605040905", None, "2026-05-04T09:05:00Z")], at(9, 5, 30))
    assert p.create == [] and p.status["lastScheduleTime"] == "2026-05-04T09:05:00Z"
    assert p.status["lastRun"] == "nightly-202605040905"  # found on the control plane, first, without it


def test_next_run_is_warm_started_from_the_newest_successful_one():
    runs = [run("nightly-202605040905", "Succeeded", "2026-05-04T09:05:00Z", "2026-05-04T09:08:00Z"),
            run("nightly-202605040900", "Succeeded", "2026-05-04T09:00:00Z", "2026-05-04T09:03:00Z")]
    p = plan(schedule(status={"lastTickTime": "2026-05-04T09:05:00Z"}, warmStart={"topK": 4}), runs, at(9, 10, 1))
    (made,) = p.create
    assert made["spec"]["tuning"]["warmStartFrom"] == "nightly-202605040905"
    assert made["spec"]["tuning"]["warmStart"] == {"topK": 4}
    assert p.status["lastSuccessfulRun"] == "nightly-202605040905"
    assert any("warm-started from nightly-202605040905" in m for _, _, m in p.events)


def test_forbid_waits_for_the_active_run_then_runs_the_tick_within_the_deadline():
    active = [run("nightly-202605040905", "Running", "2026-05-04T09:05:00Z")]
    status = {"lastTickTime": "2026-05-04T09:05:00Z"}
    waiting = plan(schedule(status=status, startingDeadlineSeconds=120), active, at(9, 10, 5))
    assert waiting.create == [] and "Forbid: waiting for nightly-202605040905" in waiting.status["lastSkipReason"]
    assert waiting.status["lastTickTime"] == "2026-05-04T09:05:00Z"  # the tick is still to run
    done = [run("nightly-202605040905", "Succeeded", "2026-05-04T09:05:00Z", "2026-05-04T09:11:00Z")]
    later = plan(schedule(status=status, startingDeadlineSeconds=120), done, at(9, 11, 30))
    assert [m["metadata"]["name"] for m in later.create] == ["nightly-202605040910"]
    too_late = plan(schedule(status=status, startingDeadlineSeconds=120), done, at(9, 12, 30))
    assert too_late.create == [] and too_late.status["skippedTicks"] == 1
    assert too_late.status["lastTickTime"] == "2026-05-04T09:10:00Z"


def test_allow_and_replace():
    active = [run("nightly-202605040905", "Running", "2026-05-04T09:05:00Z")]
    status = {"lastTickTime": "2026-05-04T09:05:00Z"}
    allow = plan(schedule(status=status, concurrencyPolicy="Allow"), active, at(9, 10, 1))
    assert len(allow.create) == 1 and allow.delete == [] and allow.status["activeCount"] == 2
    replace = plan(schedule(status=status, concurrencyPolicy="Replace"), active, at(9, 10, 1))
    assert len(replace.create) == 1 and replace.delete == ["nightly-202605040905"]
    assert replace.status["active"] == ["nightly-202605040910"]


def test_missed_ticks_run_the_newest_once_and_are_counted():
    p = plan(schedule(status={"lastTickTime": "2026-05-04T09:05:00Z"}), [], at(9, 31))
    assert [m["metadata"]["name"] for m in p.create] == ["nightly-202605040930"] and p.status["skippedTicks"] == 4


def test_history_limits_delete_the_oldest_finished_runs():
    runs = [run(f"nightly-2026050409{m:02d}", "Succeeded", f"2026-05-04T09:{m:02d}:00Z",
                f"2026-05-04T09:{m + 1:02d}:00Z") for m in (0, 5, 10, 15)]
    runs += [run(f"nightly-2026050408{m:02d}", "Failed", f"2026-05-04T08:{m:02d}:00Z",
                 f"2026-05-04T08:{m + 1:02d}:00Z") for m in (0, 5)]
    p = plan(schedule(status={"lastTickTime": "2026-05-04T09:15:00Z"}, successfulRunsHistoryLimit=2,
                      failedRunsHistoryLimit=1), runs, at(9, 16))
    assert sorted(p.delete) == ["nightly-202605040800", "nightly-202605040900", "nightly-202605040905"]


def test_suspend_creates_nothing_and_its_ticks_are_not_run_later():
    p = plan(schedule(suspend=True, status={"lastTickTime": "2026-05-04T09:05:00Z"}), [], at(9, 21))
    assert p.create == [] and p.status["lastTickTime"] == "2026-05-04T09:20:00Z" and p.status["skippedTicks"] == 3
    resumed = plan(schedule(status=p.status), [], at(9, 22))
    assert resumed.create == []


def test_run_now_starts_one_run_per_annotation_value():
    p = plan(schedule(annotations={RUN_NOW_ANNOTATION: "a"}), [], at(9, 2))
    assert [m["metadata"]["name"] for m in p.create] == [run_now_name("nightly", "a")]
    assert p.status["runNowHandled"] == "a"
    again = plan(schedule(annotations={RUN_NOW_ANNOTATION: "a"}, status=p.status), [], at(9, 3))
    assert again.create == []
    other = plan(schedule(annotations={RUN_NOW_ANNOTATION: "b"}, status=p.status), [], at(9, 3))
    assert [m["metadata"]["name"] for m in other.create] == [run_now_name("nightly", "b")]
    assert len(run_now_name("x" * 37, "b")) <= 50


def test_a_bad_schedule_or_spec_says_what_to_fix():
    bad = plan(schedule(schedule="61 * * * *"), [], at(9, 5))
    (cond,) = bad.status["conditions"]
    assert (cond["status"], cond["reason"]) == ("False", "InvalidSchedule") and "spec.schedule" in cond["message"]
    assert bad.create == [] and bad.events
    zone = plan(schedule(timeZone="Mars/Olympus"), [], at(9, 5))
    assert "spec.timeZone" in zone.status["conditions"][0]["message"]
    spec = plan(schedule(concurrencyPolicy="Sometimes"), [], at(9, 5))
    assert spec.status["conditions"][0]["reason"] == "InvalidSpec" and "concurrencyPolicy" in \
        spec.status["conditions"][0]["message"]


def test_the_window_is_resolved_on_the_ticks_day_in_the_schedules_time_zone():
    # 23:30 UTC on 4 May is already 5 May in Tokyo
    p = plan(schedule(schedule="30 8 * * *", timeZone="Asia/Tokyo", status={"lastTickTime": "2026-05-03T23:30:00Z"}),
             [], dt.datetime(2026, 5, 4, 23, 30, 5, tzinfo=UTC))
    (made,) = p.create
    assert made["metadata"]["name"] == "nightly-202605042330" and made["spec"]["data"]["end"] == "2026-05-05"
