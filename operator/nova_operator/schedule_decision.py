"""What one pass over a TrainingSchedule decides, as a pure function of the schedule, the runs it
owns and the time: the run to create (its whole manifest), the runs to delete, the status to write
and the Events to post. The I/O is in scheduling.py and kube.py.

Exactly once per tick: a tick's run has a name made from the tick (`<schedule>-<yyyymmddhhmm>`,
UTC) and is created with create-or-get, and the last tick handled is the newest of the status' and
of the runs' own tick annotations; so an operator that dies between creating a run and writing the
status makes the same decision again, and gets the run it already made."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from nova.schedule import (
    RUN_NOW_ANNOTATION,
    SCHEDULE_KIND,
    SCHEDULE_LABEL,
    TICK_ANNOTATION,
    ScheduleStatus,
    TrainingScheduleSpec,
    resolve_window,
)
from nova.spec import API_GROUP, API_VERSION, KIND, format_validation_error
from nova.status import Condition
from nova.ticks import BadSchedule, decide, zone

FINISHED = {"Succeeded", "Failed"}
RUN_NOW_SOURCE = "nova.dev/run-now-value"  # on a run made for run-now: the annotation value it served


@dataclass
class SchedulePlan:
    status: dict[str, Any]
    create: list[dict[str, Any]] = field(default_factory=list)  # TrainingRuns, created with create-or-get
    delete: list[str] = field(default_factory=list)
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)
    wait_seconds: float | None = None  # until the next tick


def _ts(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(dt.UTC)


def run_name(schedule: str, tick: dt.datetime) -> str:
    return f"{schedule}-{tick.astimezone(dt.UTC):%Y%m%d%H%M}"


def run_now_name(schedule: str, value: str) -> str:
    """One run per annotation value, whatever the time: `<schedule>-now-<6 hex of the value>`."""
    return f"{schedule}-now-{hashlib.sha256(value.encode()).hexdigest()[:6]}"


def _phase(run: dict[str, Any]) -> str:
    return str((run.get("status") or {}).get("phase") or "Pending")


def _finished_at(run: dict[str, Any]) -> str:
    status = run.get("status") or {}
    return str(status.get("completionTime") or run["metadata"].get("creationTimestamp") or "")


def _condition(status: str, reason: str, message: str, now: dt.datetime, generation: int | None) -> dict[str, Any]:
    return Condition(type="Ready", status=status, reason=reason, message=message,
                     last_transition_time=_ts(now), observed_generation=generation).model_dump(
        by_alias=True, exclude_none=True)


def run_manifest(schedule: dict[str, Any], spec: TrainingScheduleSpec, name: str, tick: dt.datetime,
                 warm_from: str | None, extra_annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """The TrainingRun of one tick: the template with its window resolved on the tick's day (in the
    schedule's time zone), warm-started from `warm_from`, owned by the schedule (deleted with it;
    its studies and models follow the run's own keepStudies rule)."""
    md = schedule["metadata"]
    run_spec = resolve_window(spec.run_template, tick.astimezone(zone(spec.time_zone)).date())
    if spec.promotion.enabled:  # the newest bars stay out of the run: its promotion judges on them
        run_spec.data.reserve_last_bars = max(run_spec.data.reserve_last_bars, spec.promotion.reserve)
    if warm_from and spec.warm_start.enabled:
        run_spec.tuning.warm_start_from = warm_from
        run_spec.tuning.warm_start.top_k = spec.warm_start.top_k
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": KIND,
        "metadata": {
            "name": name, "namespace": md["namespace"],
            "labels": {SCHEDULE_LABEL: md["name"]},
            "annotations": {TICK_ANNOTATION: _ts(tick), **(extra_annotations or {})},
            "ownerReferences": [{"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": SCHEDULE_KIND,
                                 "name": md["name"], "uid": md["uid"], "controller": True}],
        },
        "spec": run_spec.model_dump(by_alias=True, mode="json", exclude_none=True),
    }


def plan(schedule: dict[str, Any], runs: list[dict[str, Any]], now: dt.datetime) -> SchedulePlan:
    """One pass: `runs` are the TrainingRuns labelled with this schedule (owned by it)."""
    md = schedule["metadata"]
    generation = md.get("generation")
    old = dict(schedule.get("status") or {})
    try:
        spec = TrainingScheduleSpec.model_validate(schedule.get("spec") or {})
    except ValidationError as exc:
        message = "spec is invalid: " + format_validation_error(exc, "spec.").replace("\n", "; ")
        return SchedulePlan(status={**old, "observedGeneration": generation,
                                    "conditions": [_condition("False", "InvalidSpec", message, now, generation)]},
                            events=[("Warning", "InvalidSpec", message)] if _ready_reason(old) != "InvalidSpec" else [])
    runs = [r for r in runs if not r["metadata"].get("deletionTimestamp")]
    active = sorted((r for r in runs if _phase(r) not in FINISHED), key=lambda r: r["metadata"]["name"])
    succeeded = sorted((r for r in runs if _phase(r) == "Succeeded"), key=_finished_at, reverse=True)
    failed = sorted((r for r in runs if _phase(r) == "Failed"), key=_finished_at, reverse=True)
    out = SchedulePlan(status={})
    warm_from = succeeded[0]["metadata"]["name"] if succeeded else None

    # the newest tick handled: the status', or a run's own (its status write may have been lost)
    ticks_seen = [t for t in (_parse(r["metadata"].get("annotations", {}).get(TICK_ANNOTATION)) for r in runs
                              if RUN_NOW_SOURCE not in r["metadata"].get("annotations", {})) if t]
    last = max([t for t in [_parse(old.get("lastTickTime")), *ticks_seen] if t], default=None)
    last_schedule = max([t for t in [_parse(old.get("lastScheduleTime")), *ticks_seen] if t], default=None)
    created = _parse(md.get("creationTimestamp")) or now
    skipped = int(old.get("skippedTicks") or 0)
    skip_reason = old.get("lastSkipReason")
    last_run = old.get("lastRun")
    newest = max(((t, r["metadata"]["name"]) for r in runs
                  if (t := _parse(r["metadata"].get("annotations", {}).get(TICK_ANNOTATION)))), default=None)
    recorded = _parse(old.get("lastScheduleTime"))
    if newest is not None and (last_run is None or recorded is None or newest[0] > recorded):
        last_run = newest[1]  # made by a pass whose status write was lost
    try:
        tick = decide(spec.schedule, spec.time_zone, last, created, now, spec.starting_deadline_seconds)
    except BadSchedule as exc:
        return SchedulePlan(status={**old, "observedGeneration": generation,
                                    "conditions": [_condition("False", "InvalidSchedule", str(exc), now, generation)]},
                            events=[("Warning", "InvalidSchedule", str(exc))]
                            if _ready_reason(old) != "InvalidSchedule" else [])
    handled = last
    if spec.suspend:
        if tick.handled is not None:  # ticks passed while suspended are not run later
            handled, skipped, skip_reason = tick.handled, skipped + tick.skipped + (tick.run is not None), \
                "suspended"
    elif tick.run is None and tick.handled is not None:  # past the starting deadline
        handled, skipped, skip_reason = tick.handled, skipped + tick.skipped, tick.reason
        out.events.append(("Warning", "MissedSchedule", tick.reason or "tick skipped"))
    elif tick.run is not None:
        if active and spec.concurrency_policy == "Forbid":
            # not handled: it runs when the active run finishes, if still within the deadline
            names = ", ".join(r["metadata"]["name"] for r in active)
            skip_reason = f"Forbid: waiting for {names} to finish before the tick of {_ts(tick.run)}"
        else:
            if active and spec.concurrency_policy == "Replace":
                out.delete += [r["metadata"]["name"] for r in active]
                out.events.append(("Normal", "Replaced", "deleted active run(s) " + ", ".join(out.delete)))
                active = []
            name = run_name(md["name"], tick.run)
            out.create.append(run_manifest(schedule, spec, name, tick.run, warm_from))
            handled, last_schedule, last_run = tick.run, tick.run, name
            skipped += tick.skipped
            if tick.skipped:
                skip_reason = tick.reason
            out.events.append(("Normal", "RunCreated", f"created TrainingRun {name} for the tick of {_ts(tick.run)}"
                               + (f", warm-started from {warm_from}" if warm_from and spec.warm_start.enabled else "")))

    run_now = md.get("annotations", {}).get(RUN_NOW_ANNOTATION)
    if run_now and run_now != old.get("runNowHandled"):
        name = run_now_name(md["name"], run_now)
        out.create.append(run_manifest(schedule, spec, name, now, warm_from, {RUN_NOW_SOURCE: run_now}))
        last_run = name
        out.events.append(("Normal", "RunCreated", f"created TrainingRun {name} at once ({RUN_NOW_ANNOTATION}="
                           f"{run_now})"))

    # history: the newest N of each outcome are kept, the rest deleted
    out.delete += [r["metadata"]["name"] for r in succeeded[spec.successful_runs_history_limit:]]
    out.delete += [r["metadata"]["name"] for r in failed[spec.failed_runs_history_limit:]]
    active_names = [r["metadata"]["name"] for r in active]
    for made in out.create:
        if made["metadata"]["name"] not in active_names:
            active_names.append(made["metadata"]["name"])
    status = ScheduleStatus(
        last_schedule_time=_ts(last_schedule) if last_schedule else None,
        last_tick_time=_ts(handled) if handled else None,
        next_schedule_time=_ts(tick.next),
        last_run=last_run,
        last_successful_run=warm_from,
        last_successful_time=(succeeded[0].get("status") or {}).get("completionTime") if succeeded else None,
        active=active_names, active_count=len(active_names),
        skipped_ticks=skipped, last_skip_reason=skip_reason,
        run_now_handled=run_now if run_now else old.get("runNowHandled"),
        observed_generation=generation,
        conditions=[Condition.model_validate(_ready(old, "True", "Scheduled", "suspended: no new run is created"
                                                    if spec.suspend else "creating a run at each tick", now,
                                                    generation))],
    )
    out.status = status.model_dump(by_alias=True, exclude_none=True)
    out.wait_seconds = max(0.0, (tick.next - now).total_seconds())
    return out


def _ready(old: dict[str, Any], status: str, reason: str, message: str, now: dt.datetime,
           generation: int | None) -> dict[str, Any]:
    """The Ready condition, keeping its transition time while it says the same."""
    made = _condition(status, reason, message, now, generation)
    for c in old.get("conditions") or []:
        if c.get("type") == "Ready" and c.get("status") == status and c.get("reason") == reason:
            made["lastTransitionTime"] = c.get("lastTransitionTime") or made["lastTransitionTime"]
    return made


def _ready_reason(status: dict[str, Any]) -> str | None:
    for c in status.get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("reason")
    return None
