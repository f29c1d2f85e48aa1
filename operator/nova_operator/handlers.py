"""kopf handlers, kept thin: every decision is in reconcile.py, status.py and builders.py.

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
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import kopf

from nova.spec import API_GROUP, API_VERSION, PLURAL
from nova_operator import builders, failpoints, finalizers, studies
from nova_operator.kube import Kube, load_config
from nova_operator.metrics import METRICS
from nova_operator.reconcile import OPERATOR_STORAGE_URL_ENV, delete_studies, reconcile
from nova_operator.resync import Resync, ResyncLoop
from nova_operator.settings import HANDLER_THREADS, STATUS_INTERVAL
from nova_operator.status import Decision, status_patch

log = logging.getLogger(__name__)
RESOURCE = (API_GROUP, API_VERSION, PLURAL)

_state: dict[str, Any] = {}
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()
# uid -> the generation this process last decided a status for: the events that arrive before
# that status is stored must not start another pass
_handled: dict[str, int | None] = {}
RESYNC = Resync(STATUS_INTERVAL)


def _lock(uid: str) -> threading.Lock:
    """One pass at a time per run: the event handler and the resync may fire together."""
    with _locks_guard:
        return _locks.setdefault(uid, threading.Lock())


class _NoDiffBase(kopf.DiffBaseStorage):
    """kopf builds a diff base of every object at every event (a deep copy of it) for its
    change-detecting handlers; Nova registers none, so it keeps none."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> None:  # type: ignore[override]
        return None

    def fetch(self, *, body: kopf.Body) -> None:  # type: ignore[override]
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: Any) -> None:  # type: ignore[override]
        return None


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.diffbase_storage = _NoDiffBase()
    settings.posting.level = logging.CRITICAL  # events are ours: one per phase transition, not per log line
    # handler threads: a pass mostly waits on the API server and the database, so 200 runs applied
    # at once are served by many threads, not by CPU
    settings.execution.max_workers = HANDLER_THREADS
    settings.watching.server_timeout = 300
    load_config(pool_size=settings.execution.max_workers + 8)
    _state["kube"] = Kube()
    _state["cfg"] = builders.OperatorConfig.from_env()
    _state["executor"] = executor = settings.execution.executor
    studies.warm_up(os.environ.get(OPERATOR_STORAGE_URL_ENV))
    # status passes take at most a quarter of the handler threads, so a burst of new runs always
    # has threads to create their Jobs instead of queueing behind the passes of the runs before
    loop = ResyncLoop(RESYNC, lambda body, done: executor.submit(_resync_pass, body, done),
                      slots=max(2, HANDLER_THREADS // 4))
    loop.start()
    _state["resync"] = loop


@kopf.on.cleanup()
def cleanup(**_: Any) -> None:
    if "resync" in _state:
        _state["resync"].stop()


def needs_pass(body: kopf.Body | dict[str, Any]) -> bool:
    """A run whose status has not seen its current generation, and that this process has not
    already decided for (its status patch may still be on its way)."""
    md = body["metadata"]
    if md.get("deletionTimestamp"):
        return False
    generation = md.get("generation")
    if _handled.get(md["uid"]) == generation:
        return False
    status = body.get("status") or {}
    return not status.get("phase") or status.get("observedGeneration") != generation


def _decide(body: dict[str, Any]) -> Decision | None:
    """One pass (in a handler thread): the status to write, or None when there is none."""
    md = body["metadata"]
    if md.get("deletionTimestamp"):
        return None  # its children go with it; nothing to create or observe
    with _lock(md["uid"]), METRICS.reconciling():
        ops = finalizers.patch_to(body, hold=finalizers.drops_studies(body))
        if ops is not None:
            _state["kube"].patch_run(md["namespace"], md["name"], ops)
        outcome = reconcile(_state["kube"], body, _state["cfg"])
    if outcome.deleted:
        log.info("%s/%s: ttlSecondsAfterFinished passed: run deleted", md["namespace"], md["name"])
        _forget(md["uid"])
        return None
    if outcome.decision is None:
        return None
    _handled[md["uid"]] = md.get("generation")
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


def _forget(uid: str) -> None:
    METRICS.runs.forget(uid)
    RESYNC.forget(uid)
    _handled.pop(uid, None)
    with _locks_guard:
        _locks.pop(uid, None)


@kopf.on.event(*RESOURCE)
async def on_event(event: kopf.RawEvent, body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    """Every event: async, so the many that need nothing cost no thread hop. A pass runs on kopf's
    handler threads; kopf then patches the status it decided, and posts its Events."""
    raw = event["object"]
    if event["type"] == "DELETED":
        _forget(raw["metadata"]["uid"])
        return
    if raw["metadata"].get("deletionTimestamp"):
        if finalizers.holds(raw):
            await asyncio.get_running_loop().run_in_executor(_state["executor"], _release, raw)
        return
    RESYNC.seen(raw)
    if not needs_pass(raw):
        return
    decision = await asyncio.get_running_loop().run_in_executor(_state["executor"], _decide, raw)
    if decision is not None:
        _write(raw, decision, patch.status.update,
               lambda kind, reason, message: kopf.event(body, type=kind, reason=reason, message=message))


def _resync_pass(body: dict[str, Any], done: Callable[[], None]) -> None:
    """The periodic pass (a handler thread): writes its status and Events itself, outside kopf."""
    kube: Kube = _state["kube"]
    md = body["metadata"]
    body = RESYNC.body(md["uid"]) or body  # the newest the watch has shown
    try:
        decision = _decide(body)
        if decision is not None:
            def patch_status(patch: dict[str, Any]) -> None:
                stored = kube.patch_run_status(md["namespace"], md["name"], patch)
                if stored is not None:
                    RESYNC.seen(stored)

            _write(body, decision, patch_status, lambda kind, reason, message: kube.post_event(
                body, kind, reason, message))
    except Exception:  # noqa: BLE001 - logged; the run is due again after the interval
        log.exception("%s/%s: status pass failed", md["namespace"], md["name"])
    finally:
        done()


def _release(body: dict[str, Any], attempts: int = 3, delay: float = 5.0) -> None:
    """A run going with Nova's finalizer: delete its studies if the spec says so (a few tries; the
    deletion is never held for the storage's sake), then let it go."""
    md = body["metadata"]
    if finalizers.drops_studies(body):
        for attempt in range(1, attempts + 1):
            try:
                deleted = delete_studies(_state["kube"], body, _state["cfg"])
                log.info("%s/%s: deleted studies %s", md["namespace"], md["name"], ", ".join(deleted) or "(none)")
                break
            except Exception as exc:  # noqa: BLE001
                if attempt == attempts:
                    log.warning("%s/%s: studies not deleted (storage unavailable): %s", md["namespace"],
                                md["name"], exc)
                else:
                    time.sleep(delay)
    ops = finalizers.patch_to(body, hold=False)
    if ops is not None:
        _state["kube"].patch_run(md["namespace"], md["name"], ops)
