"""A run's Jobs under Kueue, as pure functions: where a queued Job stands (read from its Workload)
and what Nova patches so that its user's `suspend` and Kueue's admission never fight.

Kueue's job framework starts (unsuspends) a suspended Job whose Workload it admitted, and suspends
again a running Job whose Workload is not admitted (preemption, or someone else unsuspending it).
So Nova never sets `suspend: false` on a queued Job, and a user's suspend is not a Job patch that
Kueue would undo: Nova deactivates the Job's Workload (`spec.active: false`, Kueue's own switch;
Kueue then evicts it, frees its quota and suspends the Job) and marks the hold as its own, so that
resuming the run lifts only Nova's hold and leaves admission to Kueue. A Job created while its run
is suspended has no queue label yet (Kueue does not see it) and gets it on resume."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nova.spec import API_GROUP
from nova_operator.builders import QUEUE_ANNOTATION, QUEUE_LABEL

WORKLOAD_GROUP, WORKLOAD_VERSION, WORKLOAD_PLURAL = "kueue.x-k8s.io", "v1beta2", "workloads"
JOB_UID_LABEL = "kueue.x-k8s.io/job-uid"  # Kueue's label on the Workload of a Job
HOLD_ANNOTATION = f"{API_GROUP}/suspended-by-user"  # on a Workload Nova deactivated for spec.suspend


@dataclass(frozen=True)
class Admission:
    """Where one Job stands with Kueue. `queue` None: not queued, Kueue has no say."""

    queue: str | None = None
    workload: str | None = None
    admitted: bool = False
    cluster_queue: str | None = None
    reason: str = ""
    message: str = ""

    @property
    def waiting(self) -> bool:
        return self.queue is not None and not self.admitted


def job_queue(job: dict[str, Any] | None) -> str | None:
    """The queue Nova meant for a Job it created (its annotation), or the label someone else set."""
    md = (job or {}).get("metadata") or {}
    return (md.get("annotations") or {}).get(QUEUE_ANNOTATION) or (md.get("labels") or {}).get(QUEUE_LABEL)


def released(job: dict[str, Any]) -> bool:
    return QUEUE_LABEL in ((job.get("metadata") or {}).get("labels") or {})


def _conditions(workload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c.get("type", ""): c for c in (workload.get("status") or {}).get("conditions") or []}


def is_admitted(workload: dict[str, Any] | None) -> bool:
    return bool(workload) and _conditions(workload or {}).get("Admitted", {}).get("status") == "True"


def is_active(workload: dict[str, Any]) -> bool:
    return (workload.get("spec") or {}).get("active", True) is not False


def held_by_nova(workload: dict[str, Any]) -> bool:
    return HOLD_ANNOTATION in ((workload.get("metadata") or {}).get("annotations") or {})


def pick_workload(job_uid: str, workloads: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The Job's Workload: owned by it, the newest one not finished (Kueue may make a new one when
    the Job changes shape)."""
    owned = [w for w in workloads
             if any(o.get("uid") == job_uid for o in (w.get("metadata") or {}).get("ownerReferences") or [])]
    live = [w for w in owned if _conditions(w).get("Finished", {}).get("status") != "True"] or owned
    return max(live, key=lambda w: (w.get("metadata") or {}).get("creationTimestamp") or "", default=None)


def admission(job: dict[str, Any] | None, workload: dict[str, Any] | None, kueue_missing: str | None = None
              ) -> Admission:
    """Where the Job stands, in Kueue's own words (its Workload's conditions) while it waits."""
    queue = job_queue(job)
    if queue is None or job is None:
        return Admission()
    if kueue_missing:
        return Admission(queue, reason="KueueUnavailable", message=kueue_missing)
    if not released(job):
        return Admission(queue, reason="Held", message="not yet released to Kueue (the run is suspended)")
    if workload is None:
        return Admission(queue, reason="WorkloadPending",
                         message=f"waiting for Kueue to make a Workload for Job {job['metadata']['name']} (Kueue "
                                 "must run with the batch/job integration, and LocalQueue "
                                 f"'{queue}' must exist in this namespace)")
    name = workload["metadata"]["name"]
    cq = ((workload.get("status") or {}).get("admission") or {}).get("clusterQueue")
    conds = _conditions(workload)
    if is_admitted(workload):
        return Admission(queue, name, True, cq, "Admitted", f"admitted by ClusterQueue '{cq}'" if cq else "admitted")
    evicted, reserved, admitted = conds.get("Evicted", {}), conds.get("QuotaReserved", {}), conds.get("Admitted", {})
    if evicted.get("status") == "True" and reserved.get("status") == "True":
        why = evicted  # being stopped (preempted, deactivated): its quota is not yet released
    elif reserved.get("status") == "False":
        why = reserved  # Kueue says why it reserves no quota: e.g. which resource the ClusterQueue lacks
    elif reserved.get("status") == "True":
        why = admitted or {"reason": "QuotaReserved", "message": "quota reserved; waiting for admission checks"}
    else:
        why = {"reason": "Pending", "message": "Kueue has not evaluated the Workload yet"}
    if not is_active(workload) and not held_by_nova(workload):
        why = {"reason": "Deactivated", "message": "the Workload is deactivated (spec.active: false), not by Nova: "
               f"reactivate it with `kubectl patch workload {name} --type=merge -p '{{\"spec\":{{\"active\":true}}}}'`"}
    return Admission(queue, name, False, cq, str(why.get("reason") or "Pending"), str(why.get("message") or ""))


@dataclass(frozen=True)
class Patches:
    """What to change so the Job and its Workload follow spec.suspend; None: nothing."""

    job: dict[str, Any] | None = None
    workload: dict[str, Any] | None = None


def hold_patch(hold: bool) -> dict[str, Any]:
    """Nova's hold on a Workload: deactivated and marked as Nova's, or both undone."""
    return {"metadata": {"annotations": {HOLD_ANNOTATION: "true" if hold else None}}, "spec": {"active": not hold}}


def follow_suspend(suspend: bool, job: dict[str, Any], workload: dict[str, Any] | None) -> Patches:
    """Nova's side of a queued Job: only ever suspends it (or holds its Workload); starting it is
    Kueue's call."""
    queue = job_queue(job)
    if queue is None:
        return Patches()
    spec = job.get("spec") or {}
    if suspend:
        wl = hold_patch(True) if workload is not None and is_active(workload) else None
        # with an admitted Workload Kueue stops the Job itself once it is deactivated; a suspend
        # patched before that would be undone (Kueue starts a suspended Job it has admitted)
        stop = not spec.get("suspend") and not is_admitted(workload)
        return Patches({"spec": {"suspend": True}} if stop else None, wl)
    job_patch = None if released(job) else {"metadata": {"labels": {QUEUE_LABEL: queue}}}
    wl = hold_patch(False) if workload is not None and held_by_nova(workload) else None
    return Patches(job_patch, wl)
