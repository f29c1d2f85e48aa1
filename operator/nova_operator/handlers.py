"""kopf handlers, kept thin: every decision is in reconcile.py, status.py and builders.py.

Create, resume (operator restart) and spec updates reconcile at once, so the worker Job appears
without waiting for a timer; the timer keeps status in step with the studies and starts the refit.
kopf keeps its own bookkeeping in annotations (never in `status`, whose schema is strict)."""

from __future__ import annotations

import logging
import threading
from typing import Any

import kopf

from nova.spec import API_GROUP, API_VERSION, PLURAL
from nova_operator import builders, failpoints
from nova_operator.kube import Kube, load_config
from nova_operator.metrics import METRICS
from nova_operator.settings import HANDLER_THREADS, STATUS_INTERVAL
from nova_operator.reconcile import delete_studies, reconcile
from nova_operator.status import status_patch

log = logging.getLogger(__name__)
RESOURCE = (API_GROUP, API_VERSION, PLURAL)

_state: dict[str, Any] = {}
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()
_timer_slots = threading.BoundedSemaphore(max(2, HANDLER_THREADS // 4))


def _lock(uid: str) -> threading.Lock:
    """One pass at a time per run: the create handler and the timer may fire together."""
    with _locks_guard:
        return _locks.setdefault(uid, threading.Lock())


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=API_GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=API_GROUP, key="last-handled-configuration")
    settings.persistence.finalizer = f"{API_GROUP}/studies"
    settings.posting.level = logging.CRITICAL  # events are ours: one per phase transition, not per log line
    # handler threads: a pass mostly waits on the API server and the database, so 200 runs applied
    # at once are served by many threads, not by CPU
    settings.execution.max_workers = HANDLER_THREADS
    settings.watching.server_timeout = 300
    # A run deleted by its own status timer (ttlSecondsAfterFinished) is deleted while that timer's
    # pass is still returning; kopf then waits for the timer before releasing its finalizer, and
    # by default looks again only after 60 s. Wait up to 2 s at once, then poll every 2 s.
    settings.background.instant_exit_timeout = 2.0
    settings.background.cancellation_polling = 2.0
    load_config(pool_size=settings.execution.max_workers + 8)
    _state["kube"] = Kube()
    _state["cfg"] = builders.OperatorConfig.from_env()


def _pass(body: kopf.Body, patch: kopf.Patch, logger: logging.Logger) -> None:
    md = body["metadata"]
    with _lock(md["uid"]), METRICS.reconciling():
        outcome = reconcile(_state["kube"], dict(body), _state["cfg"])
    if outcome.deleted:
        logger.info("ttlSecondsAfterFinished passed: run deleted")
        METRICS.runs.forget(md["uid"])
        return
    if outcome.decision is None:
        return
    failpoints.hit(f"before-status-{outcome.decision.status.get('phase')}")
    METRICS.runs.observe(md["uid"], md["namespace"], md["name"], outcome.decision.status)
    patch.status.update(status_patch(body.get("status"), outcome.decision.status))
    for kind, reason, message in outcome.decision.events:
        kopf.event(body, type=kind, reason=reason, message=message)
        log.info("%s/%s: %s: %s", body["metadata"]["namespace"], body["metadata"]["name"], reason, message)


@kopf.on.resume(*RESOURCE, backoff=2)
@kopf.on.create(*RESOURCE, backoff=2)
@kopf.on.update(*RESOURCE, field="spec", backoff=2)
def on_change(body: kopf.Body, patch: kopf.Patch, logger: logging.Logger, **_: Any) -> None:
    _pass(body, patch, logger)


# initial_delay: the create/resume handler makes the first pass; a timer that also fired at once
# doubled the work of every new run (it measured as the bulk of apply -> Job under 200 runs)
@kopf.timer(*RESOURCE, interval=STATUS_INTERVAL, initial_delay=STATUS_INTERVAL, sharp=False)
def on_timer(body: kopf.Body, patch: kopf.Patch, logger: logging.Logger, **_: Any) -> None:
    # Status passes take at most a quarter of the handler threads; a tick that finds them all busy
    # is skipped (the next comes in STATUS_INTERVAL), so a burst of new runs always has threads to
    # create their Jobs instead of queueing behind the status passes of the runs before them.
    if not _timer_slots.acquire(blocking=False):
        return
    try:
        _pass(body, patch, logger)
    finally:
        _timer_slots.release()


@kopf.on.event(*RESOURCE)
async def on_event(event: kopf.RawEvent, **_: Any) -> None:
    """Every deletion, finalizer or not, drops the run from the metrics (async: no thread hop for
    the many events that are not deletions)."""
    if event["type"] == "DELETED":
        METRICS.runs.forget(event["object"]["metadata"]["uid"])


def _drop_studies(spec: kopf.Spec, **_: Any) -> bool:
    return not (((spec.get("tuning") or {}).get("storage") or {}).get("keepStudies", True))


@kopf.on.delete(*RESOURCE, when=_drop_studies)
def on_delete(body: kopf.Body, retry: int, logger: logging.Logger, **_: Any) -> None:
    """Children go by owner references; the studies only when the spec says keepStudies: false."""
    try:
        deleted = delete_studies(_state["kube"], dict(body), _state["cfg"])
    except Exception as exc:  # noqa: BLE001 - never hold a deletion forever for the storage's sake
        if retry < 3:
            raise kopf.TemporaryError(f"cannot delete the studies yet: {exc}", delay=5) from None
        logger.warning("studies not deleted (storage unavailable): %s", exc)
        return
    logger.info("deleted studies %s", ", ".join(deleted) or "(none)")
    with _locks_guard:
        _locks.pop(body["metadata"]["uid"], None)
