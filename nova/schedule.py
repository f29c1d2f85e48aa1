"""The TrainingSchedule kind: a cron schedule that creates a TrainingRun per tick, each on the newest
data window and warm-started from the last successful run. Defined once, like TrainingRun: the
CRD in `crds/` is generated from these models (nova.crd) and the operator parses with them.

The run template is a TrainingRun spec whose data window rolls: `data.lookback` (e.g. `5y`) and
`data.end: latest` are resolved to dates when each run is created (`resolve_window`), so every run
itself has fixed dates, and its studies' fingerprint says exactly which bars it measured."""

from __future__ import annotations

import calendar
import datetime as dt
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from nova.promotion import PromotedModel, PromotionRecord, PromotionSpec
from nova.spec import CLAIM_RULE, DNS_LABEL_PATTERN, DataSpec, SpecModel, TrainingRunSpec, check_data_source
from nova.status import Condition, StatusModel

SCHEDULE_KIND = "TrainingSchedule"
SCHEDULE_PLURAL = "trainingschedules"
RUN_NOW_ANNOTATION = "nova.dev/run-now"
SCHEDULE_LABEL = "nova.dev/schedule"  # on each run it creates
TICK_ANNOTATION = "nova.dev/scheduled-time"  # on each run: the tick it is for (RFC 3339, UTC)
NAME_SUFFIX = "-yyyymmddhhmm"
MAX_SCHEDULE_NAME = 50 - len(NAME_SUFFIX)  # a run's name is <schedule>-<yyyymmddhhmm>, at most 50

LOOKBACK_PATTERN = r"^[1-9][0-9]{0,3}[dwmy]$"
END_PATTERN = r"^(latest|[0-9]{4}-[0-9]{2}-[0-9]{2})$"
# five cron fields, or a macro; croniter judges the rest (the operator reports what it refuses)
CRON_PATTERN = r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|(\S+\s+){4}\S+)$"


class RollingDataSpec(DataSpec):
    """spec.data of a TrainingRun, plus a window that rolls with each run."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [
        {"rule": "!has(self.lookback) || !has(self.start)",
         "message": "runTemplate.data: give lookback or start, not both"},
        {"rule": "self.source != 'file' || has(self.uri)",
         "message": "data.uri is required when data.source is 'file' (a folder, file or glob)"},
        {"rule": "self.source != 'postgres' || has(self.table) || has(self.query)",
         "message": "data.table or data.query is required when data.source is 'postgres'"},
        {"rule": CLAIM_RULE[0], "message": CLAIM_RULE[1]},
    ]})

    end: str | None = Field(None, pattern=END_PATTERN, description="Last day (inclusive): a date, or 'latest' "
                            "for the day each run is created (in the schedule's time zone)")  # type: ignore[assignment]  # a run template's end may be 'latest'
    lookback: str | None = Field(None, pattern=LOOKBACK_PATTERN, description="The window's length back from "
                                 "its end: <n>d, <n>w, <n>m or <n>y (e.g. 5y); resolved to data.start per run")

    @model_validator(mode="after")
    def _check(self) -> RollingDataSpec:
        if self.lookback and self.start:
            raise ValueError("runTemplate.data: give lookback or start, not both")
        check_data_source(self)
        return self


class RunTemplateSpec(TrainingRunSpec):
    """A TrainingRun spec whose data window rolls (data.lookback, data.end: latest)."""

    data: RollingDataSpec


class ScheduleWarmStart(SpecModel):
    """Each new run's studies are seeded with the previous successful run's best trials."""

    enabled: bool = Field(True, description="Warm-start each run from the previous successful one")
    top_k: int = Field(10, ge=1, le=1000, description="Best COMPLETE trials per symbol enqueued "
                       "(the run's tuning.warmStart.topK)")


class TrainingScheduleSpec(SpecModel):
    """What a user writes under a TrainingSchedule's `spec:`."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [
        {"rule": "!self.promotion.enabled || self.promotion.gap >= self.runTemplate.target.horizon",
         "message": "promotion.gap must be >= runTemplate.target.horizon, or the labels of the last training "
                    "bars reach into the promotion window"},
    ]})

    schedule: str = Field(..., pattern=CRON_PATTERN, max_length=256,
                          description="Cron expression (five fields, e.g. '0 2 * * 1-5', or @daily)")
    time_zone: str = Field("UTC", max_length=64, pattern=r"^[A-Za-z0-9_+\-/]+$",
                           description="IANA time zone the schedule is read in (e.g. America/New_York)")
    concurrency_policy: Literal["Forbid", "Allow", "Replace"] = Field(
        "Forbid", description="When a tick comes while a run is still active: Forbid skips the tick, "
        "Allow starts another, Replace deletes the active run and starts the new one")
    starting_deadline_seconds: int | None = Field(None, ge=1, description="A tick missed by more than this "
                                                  "(operator down, Forbid) is skipped and counted; default: "
                                                  "the most recent missed tick always runs")
    successful_runs_history_limit: int = Field(3, ge=0, le=1000, description="Succeeded runs kept; older ones "
                                               "are deleted (their models, and studies with keepStudies, stay)")
    failed_runs_history_limit: int = Field(1, ge=0, le=1000, description="Failed runs kept; older ones deleted")
    suspend: bool = Field(False, description="No new run is created while true (active runs go on)")
    warm_start: ScheduleWarmStart = Field(default_factory=ScheduleWarmStart)
    promotion: PromotionSpec = Field(default_factory=PromotionSpec, description="Whether a succeeded run's "
                                     "models replace the promoted ones (judged on bars neither trained on)")
    run_template: RunTemplateSpec = Field(..., description="The spec of each run; data.lookback and "
                                          "data.end: latest are resolved to dates when the run is created")

    @model_validator(mode="after")
    def _check(self) -> TrainingScheduleSpec:
        if self.promotion.enabled and self.promotion.gap < self.run_template.target.horizon:
            raise ValueError("promotion.gap must be >= runTemplate.target.horizon, or the labels of the "
                             "last training bars reach into the promotion window")
        return self


class ScheduleStatus(StatusModel):
    """What the operator writes under a TrainingSchedule's `status:`."""

    last_schedule_time: str | None = Field(None, description="RFC 3339 time of the last tick a run was created for")
    last_tick_time: str | None = Field(None, description="RFC 3339 time of the newest tick handled: run, or "
                                       "skipped past the deadline or while suspended")
    next_schedule_time: str | None = Field(None, description="RFC 3339 time of the next tick")
    last_run: str | None = Field(None, description="Name of the last run created")
    last_successful_run: str | None = Field(None, description="Name of the newest Succeeded run (the next warm start)")
    last_successful_time: str | None = Field(None, description="RFC 3339 time that run finished")
    active: list[str] = Field(default_factory=list, description="Runs of this schedule not yet finished")
    active_count: int = Field(0, ge=0, description="How many runs are active")
    skipped_ticks: int = Field(0, ge=0, description="Ticks skipped so far (missed past the deadline, "
                               "or Forbid while a run was active)")
    last_skip_reason: str | None = Field(None, description="Why the last tick was skipped")
    run_now_handled: str | None = Field(None, description="The last nova.dev/run-now annotation value served")
    promoted: dict[str, PromotedModel] = Field(default_factory=dict, description="Per symbol, the model "
                                               "promoted now (what <output>/<schedule>/current/<symbol>/ holds)")
    last_promotion: PromotionRecord | None = Field(None, description="The newest judgement of a run's models "
                                                   "against the promoted ones, with both scores and why")
    observed_generation: int | None = Field(None, ge=0, description="metadata.generation this status saw")
    conditions: list[Condition] = Field(default_factory=list, description="Ready (False with a reason on a bad "
                                        "schedule or time zone)")


class ScheduleMetadata(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(..., pattern=DNS_LABEL_PATTERN, max_length=MAX_SCHEDULE_NAME)
    namespace: str = Field("default", pattern=DNS_LABEL_PATTERN, max_length=63)


class TrainingSchedule(BaseModel):
    """A whole TrainingSchedule manifest."""

    model_config = ConfigDict(extra="allow")
    api_version: str = Field("nova.dev/v1alpha1", alias="apiVersion")
    kind: Literal["TrainingSchedule"] = "TrainingSchedule"
    metadata: ScheduleMetadata
    spec: TrainingScheduleSpec


def lookback_start(end: dt.date, lookback: str) -> dt.date:
    """The first day of a window of `lookback` (<n>d|w|m|y) ending on `end` (a month back from
    31 March is the last day of February)."""
    match = re.fullmatch(r"([1-9][0-9]*)([dwmy])", lookback)
    if not match:
        raise ValueError(f"lookback {lookback!r}: expected <n>d, <n>w, <n>m or <n>y (e.g. 5y)")
    n, unit = int(match.group(1)), match.group(2)
    if unit in "dw":
        return end - dt.timedelta(days=n * (7 if unit == "w" else 1))
    months = end.year * 12 + end.month - 1 - n * (12 if unit == "y" else 1)
    year, month = divmod(months, 12)
    month += 1
    return dt.date(year, month, min(end.day, calendar.monthrange(year, month)[1]))


def resolve_window(template: RunTemplateSpec, today: dt.date) -> TrainingRunSpec:
    """The template as a TrainingRun spec with fixed dates: `end: latest` is `today` (the tick's day
    in the schedule's time zone), `lookback` gives start."""
    body: dict[str, Any] = template.model_dump(by_alias=True, mode="json", exclude_none=True)
    data = body["data"]
    lookback = data.pop("lookback", None)
    end = data.get("end")
    end_day = today if end == "latest" else (dt.date.fromisoformat(end) if end else None)
    if end_day is not None:
        data["end"] = end_day.isoformat()
    if lookback:
        data["start"] = lookback_start(end_day or today, lookback).isoformat()
    return TrainingRunSpec.model_validate(body)
