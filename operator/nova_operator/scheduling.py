"""The TrainingSchedule controller's I/O: one pass reads the schedule's runs, asks
schedule_decision.plan what to do, and does it (create-or-get the runs, delete old ones, patch the
status, post Events). A loop thread gives every schedule the watch has shown a pass each
`interval` seconds (ticks are minutes apart; a pass is one list call when nothing is due), so a
restarted operator finds every schedule again from the watch's first listing."""

from __future__ import annotations

import datetime as dt
import functools
import logging
import threading
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from nova.schedule import SCHEDULE_KIND, SCHEDULE_LABEL, TrainingScheduleSpec
from nova_operator import failpoints, promotion_decision
from nova_operator.builders import OperatorConfig, promote_job_name
from nova_operator.kube import Kube
from nova_operator.promotion_decision import PromoteJob, PromotionPlan
from nova_operator.schedule_decision import _finished_at, _phase, plan

log = logging.getLogger(__name__)


def observe_promote_job(kube: Kube, namespace: str, run: str) -> PromoteJob | None:
    """A run's promote Job: None (not made yet), Active, Succeeded with its result, or Failed."""
    name = promote_job_name(run)
    job = kube.get_job(namespace, name)
    if job is None:
        return None
    conds = {c.get("type") for c in (job.get("status") or {}).get("conditions") or [] if c.get("status") == "True"}
    if "Complete" in conds:
        return PromoteJob("Succeeded", result=kube.pod_result(namespace, name, "promote"))
    if "Failed" in conds:
        return PromoteJob("Failed", message=kube.failed_pod_message(namespace, name, "promote"))
    return PromoteJob("Active")


def _promotion(kube: Kube, cfg: OperatorConfig, body: dict[str, Any], runs: list[dict[str, Any]],
               now: dt.datetime) -> PromotionPlan | None:
    try:
        spec = TrainingScheduleSpec.model_validate(body.get("spec") or {})
    except ValidationError:
        return None  # plan() reports it
    succeeded = sorted((r for r in runs if _phase(r) == "Succeeded" and not r["metadata"].get("deletionTimestamp")),
                       key=_finished_at, reverse=True)
    run = promotion_decision.pending(body, spec, succeeded)
    job = observe_promote_job(kube, body["metadata"]["namespace"], run) if run else None
    return promotion_decision.decide(body, spec, succeeded, job, cfg, now)


def schedule_pass(kube: Kube, body: dict[str, Any], now: dt.datetime | None = None,
                  cfg: OperatorConfig | None = None) -> dict[str, Any]:
    """One pass over one schedule; returns the status it wrote (or would have: unchanged)."""
    md = body["metadata"]
    ns, name = md["namespace"], md["name"]
    body = {"kind": SCHEDULE_KIND, **body}
    runs = [r for r in kube.list_runs(ns, f"{SCHEDULE_LABEL}={name}")
            if any(o.get("uid") == md["uid"] for o in r["metadata"].get("ownerReferences") or [])]
    now = now or dt.datetime.now(dt.UTC)
    decided = plan(body, runs, now)
    promoted = _promotion(kube, cfg or OperatorConfig.from_env(), body, runs, now)
    if promoted is not None:
        decided.status.update(promoted.status)
        decided.delete = [d for d in decided.delete if d != promoted.evaluating]  # judged first
        for manifest in promoted.create:
            _, made = kube.create_or_get(manifest)
            log.info("%s/%s: %s promote Job %s", ns, name, "created" if made else "found",
                     manifest["metadata"]["name"])
        decided.events += promoted.events
    for old in decided.delete:
        kube.delete_run(ns, old)
        log.info("%s/%s: deleted TrainingRun %s", ns, name, old)
    existed = set()
    for manifest in decided.create:
        run, created = kube.create_or_get(manifest)
        run_name = manifest["metadata"]["name"]
        if created:
            log.info("%s/%s: created TrainingRun %s", ns, name, run_name)
        else:
            existed.add(run_name)  # made by an earlier pass whose status was not written: not again
            log.info("%s/%s: TrainingRun %s exists already (an earlier pass made it)", ns, name, run_name)
        failpoints.hit("schedule-after-create")
    old_status = body.get("status") or {}
    if any(old_status.get(k) != v for k, v in decided.status.items() if k != "conditions") or \
            _conditions_differ(old_status, decided.status):
        kube.patch_schedule_status(ns, name, decided.status)
    for kind, reason, message in decided.events:
        if reason == "RunCreated" and any(f"TrainingRun {n} " in message for n in existed):
            continue
        kube.post_event(body, kind, reason, message)
        log.info("%s/%s: %s: %s", ns, name, reason, message)
    return decided.status


def _conditions_differ(old: dict[str, Any], new: dict[str, Any]) -> bool:
    def key(status: dict[str, Any]) -> list[tuple[Any, ...]]:
        return [(c.get("type"), c.get("status"), c.get("reason"), c.get("message"))
                for c in status.get("conditions") or []]
    return key(old) != key(new)


class ScheduleLoop:
    """Every schedule the watch has shown gets a pass each `interval` seconds, one at a time per
    schedule, on the handler threads (`submit`)."""

    def __init__(self, submit: Callable[[Callable[[], None]], object], kube: Kube, interval: float,
                 cfg: OperatorConfig | None = None) -> None:
        self._submit, self._kube, self._interval = submit, kube, interval
        self._cfg = cfg or OperatorConfig.from_env()
        self._bodies: dict[str, dict[str, Any]] = {}
        self._busy: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="nova-schedules", daemon=True)

    def seen(self, body: dict[str, Any]) -> None:
        with self._lock:
            self._bodies[body["metadata"]["uid"]] = body

    def forget(self, uid: str) -> None:
        with self._lock:
            self._bodies.pop(uid, None)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            with self._lock:
                due = [(uid, body) for uid, body in self._bodies.items() if uid not in self._busy]
                self._busy.update(uid for uid, _ in due)
            for uid, body in due:
                self._submit(functools.partial(self._run, uid, body))

    def _run(self, uid: str, body: dict[str, Any]) -> None:
        md = body["metadata"]
        try:
            if not md.get("deletionTimestamp"):
                stored = schedule_pass(self._kube, body, cfg=self._cfg)
                with self._lock:  # the status just written, so the next pass does not see an older one
                    if uid in self._bodies and self._bodies[uid] is body:
                        self._bodies[uid] = {**body, "status": stored}
        except Exception:  # noqa: BLE001 - logged; the schedule gets another pass after the interval
            log.exception("%s/%s: schedule pass failed", md.get("namespace"), md.get("name"))
        finally:
            with self._lock:
                self._busy.discard(uid)
