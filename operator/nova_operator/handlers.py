"""kopf handlers, kept to declarations: every decision is in reconcile.py, decision.py and builders.py,
and everything the operator keeps is in one OperatorContext (context.py), in kopf's memo.

Level-triggered, as Kubernetes controllers are: every watch event of a run is looked at, and a run
whose status has not yet seen its current spec (new, edited, or never written because the operator
died first) gets a pass at once, in the event's own cycle; kopf patches the status it decided. A
periodic pass over every run (resync.py) follows the studies and the Jobs and starts the refit.

kopf's change-detecting handlers (on.create/update/resume/delete) and its timers are not used:
each put a finalizer or a diff-base annotation on every run, three more writes per new run before
its Job. Only a run whose studies go with it (keepStudies: false) carries a finalizer, Nova's own
(finalizers.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import kopf

from nova.schedule import SCHEDULE_PLURAL
from nova.spec import API_GROUP, API_VERSION, PLURAL
from nova_operator import failpoints, finalizers
from nova_operator.context import OperatorContext
from nova_operator.decision import Decision, status_patch
from nova_operator.kube import Kube, load_config
from nova_operator.metrics import METRICS
from nova_operator.reconcile import hold_finalizer, needs_pass, reconcile, release
from nova_operator.resync import ResyncLoop
from nova_operator.scheduling import ScheduleLoop
from nova_operator.settings import Settings

log = logging.getLogger(__name__)
RESOURCE = (API_GROUP, API_VERSION, PLURAL)


class _NoDiffBase(kopf.DiffBaseStorage):
    """kopf builds a diff base of every object at every event (a deep copy of it) for its
    change-detecting handlers; Nova registers none, so it keeps none."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> None:  # type: ignore[override]  # no essence: nothing compares it
        return None

    def fetch(self, *, body: kopf.Body) -> None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: Any) -> None:
        return None


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    ours: Settings = memo.get("settings") or Settings.from_env()  # main.py puts it there
    settings.persistence.diffbase_storage = _NoDiffBase()
    settings.posting.level = logging.CRITICAL  # events are ours: one per phase transition, not per log line
    # handler threads: a pass mostly waits on the API server and the database, so 200 runs applied
    # at once are served by many threads, not by CPU
    settings.execution.max_workers = ours.handler_threads
    settings.watching.server_timeout = 300
    load_config(pool_size=ours.handler_threads + 8)
    executor = settings.execution.executor
    ctx = OperatorContext.start(ours, Kube(), executor)
    ctx.studies.warm_up(ours.operator_storage_url)
    def submit(body: dict[str, Any], done: Callable[[], None]) -> None:
        executor.submit(_resync_pass, ctx, body, done)

    ctx.resync_loop = ResyncLoop(ctx.resync, submit, slots=ours.resync_slots)
    ctx.resync_loop.start()
    ctx.schedules = ScheduleLoop(lambda task: executor.submit(task), ctx.kube, ours.status_interval, ctx.cfg)
    ctx.schedules.start()
    memo.nova = ctx


@kopf.on.cleanup()
def cleanup(memo: kopf.Memo, **_: Any) -> None:
    ctx: OperatorContext | None = memo.get("nova")
    if ctx is not None and ctx.resync_loop is not None:
        ctx.resync_loop.stop()
    if ctx is not None and ctx.schedules is not None:
        ctx.schedules.stop()


def _decide(ctx: OperatorContext, body: dict[str, Any]) -> Decision | None:
    """One pass (in a handler thread): the status to write, or None when there is none."""
    md = body["metadata"]
    if md.get("deletionTimestamp"):
        return None  # its children go with it; nothing to create or observe
    with ctx.lock(md["uid"]), METRICS.reconciling():
        hold_finalizer(ctx, body)
        outcome = reconcile(ctx, body)
    if outcome.deleted:
        log.info("%s/%s: ttlSecondsAfterFinished passed: run deleted", md["namespace"], md["name"])
        _forget(ctx, md["uid"])
        return None
    if outcome.decision is None:
        return None
    ctx.handled[md["uid"]] = md.get("generation")
    failpoints.hit(f"before-status-{outcome.decision.status.get('phase')}")
    METRICS.runs.observe(md["uid"], md["namespace"], md["name"], outcome.decision.status)
    return outcome.decision


def _write(body: dict[str, Any], decision: Decision, patch_status: Callable[[dict[str, Any]], None],
           post_event: Callable[[str, str, str], None]) -> None:
    md = body["metadata"]
    patch = status_patch(body.get("status"), decision.status)
    if patch:
        patch_status(patch)
    for kind, reason, message in decision.events:
        post_event(kind, reason, message)
        log.info("%s/%s: %s: %s", md["namespace"], md["name"], reason, message)


def _forget(ctx: OperatorContext, uid: str) -> None:
    METRICS.runs.forget(uid)
    ctx.forget(uid)


@kopf.on.event(*RESOURCE)
async def on_event(event: kopf.RawEvent, body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    """Every event: async, so the many that need nothing cost no thread hop. A pass runs on kopf's
    handler threads; kopf then patches the status it decided, and posts its Events."""
    ctx: OperatorContext = memo.nova
    raw: dict[str, Any] = dict(event["object"])  # the watch's own JSON (a shallow copy)
    if event["type"] == "DELETED":
        _forget(ctx, raw["metadata"]["uid"])
        return
    loop = asyncio.get_running_loop()
    if raw["metadata"].get("deletionTimestamp"):
        if finalizers.holds(raw):
            await loop.run_in_executor(ctx.executor, release, ctx, raw)
        return
    ctx.resync.seen(raw)
    if not needs_pass(ctx, raw):
        return
    decision = await loop.run_in_executor(ctx.executor, _decide, ctx, raw)
    if decision is not None:
        _write(raw, decision, patch.status.update,
               lambda kind, reason, message: kopf.event(body, type=kind, reason=reason, message=message))


@kopf.on.event(API_GROUP, API_VERSION, SCHEDULE_PLURAL)
async def on_schedule_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    """TrainingSchedules: the watch only keeps the newest body; scheduling.ScheduleLoop decides."""
    ctx: OperatorContext = memo.nova
    raw: dict[str, Any] = dict(event["object"])
    if ctx.schedules is None:
        return
    if event["type"] == "DELETED":
        ctx.schedules.forget(raw["metadata"]["uid"])
    else:
        ctx.schedules.seen(raw)


def _resync_pass(ctx: OperatorContext, body: dict[str, Any], done: Callable[[], None]) -> None:
    """The periodic pass (a handler thread): writes its status and Events itself, outside kopf."""
    md = body["metadata"]
    body = ctx.resync.body(md["uid"]) or body  # the newest the watch has shown
    try:
        decision = _decide(ctx, body)
        if decision is not None:
            def patch_status(patch: dict[str, Any]) -> None:
                stored = ctx.kube.patch_run_status(md["namespace"], md["name"], patch)
                if stored is not None:
                    ctx.resync.seen(stored)

            _write(body, decision, patch_status, lambda kind, reason, message: ctx.kube.post_event(
                body, kind, reason, message))
    except Exception:  # noqa: BLE001 - logged; the run is due again after the interval
        log.exception("%s/%s: status pass failed", md["namespace"], md["name"])
    finally:
        done()
