"""A queued Job's standing with Kueue, and what Nova patches for spec.suspend, without a cluster.

The Workloads here have the shape Kueue v0.17 writes (tests/operator/test_kueue.py checks the same
against the real Kueue manager)."""

from __future__ import annotations

from nova_operator import builders as b
from nova_operator import queueing as q

QUOTA_MESSAGE = ("couldn't assign flavors to pod set main: insufficient unused quota for nvidia.com/gpu in flavor "
                 "gpu, 1 more needed")


def job(queue: str | None = "gpus", released: bool = True, suspend: bool = True, uid: str = "job-uid") -> dict:
    labels = {b.QUEUE_LABEL: queue} if queue and released else {}
    annotations = {b.QUEUE_ANNOTATION: queue} if queue else {}
    return {"metadata": {"name": "r-workers", "namespace": "ns", "uid": uid, "labels": labels,
                         "annotations": annotations}, "spec": {"suspend": suspend}}


def workload(*conds: tuple[str, str, str, str], active: bool = True, held: bool = False, owner: str = "job-uid",
             name: str = "job-r-workers-1a2b3", created: str = "2026-01-01T00:00:00Z", cq: str | None = None) -> dict:
    wl = {"metadata": {"name": name, "creationTimestamp": created, "ownerReferences": [{"uid": owner}],
                       "annotations": {q.HOLD_ANNOTATION: "true"} if held else {}},
          "spec": {"active": active, "queueName": "gpus"},
          "status": {"conditions": [{"type": t, "status": s, "reason": r, "message": m} for t, s, r, m in conds]}}
    if cq:
        wl["status"]["admission"] = {"clusterQueue": cq}
    return wl


ADMITTED = workload(("QuotaReserved", "True", "QuotaReserved", "Quota reserved in ClusterQueue gpu-cq"),
                    ("Admitted", "True", "Admitted", "The workload is admitted"), cq="gpu-cq")
PENDING = workload(("QuotaReserved", "False", "Pending", QUOTA_MESSAGE))


def test_a_job_without_a_queue_is_not_kueues():
    assert q.admission(job(queue=None), None) == q.Admission()
    assert not q.Admission().waiting
    assert q.follow_suspend(True, job(queue=None), None) == q.Patches()


def test_pending_carries_kueues_own_reason_and_message():
    a = q.admission(job(), PENDING)
    assert a.waiting and a.queue == "gpus" and a.workload == "job-r-workers-1a2b3"
    assert (a.reason, a.message) == ("Pending", QUOTA_MESSAGE)


def test_admitted_names_the_cluster_queue():
    a = q.admission(job(suspend=False), ADMITTED)
    assert a.admitted and not a.waiting and a.cluster_queue == "gpu-cq"


def test_preempted_while_its_quota_is_still_reserved_says_so():
    wl = workload(("QuotaReserved", "True", "QuotaReserved", ""),
                  ("Admitted", "False", "NoReservation", ""),
                  ("Evicted", "True", "Preempted", "Preempted to accommodate a workload (UID: x) due to "
                   "prioritization in the ClusterQueue"))
    a = q.admission(job(suspend=False), wl)
    assert a.waiting and a.reason == "Preempted" and "prioritization" in a.message


def test_no_workload_yet_says_what_kueue_needs():
    a = q.admission(job(), None)
    assert a.waiting and a.reason == "WorkloadPending" and "LocalQueue 'gpus'" in a.message


def test_kueue_missing_is_said_plainly():
    a = q.admission(job(), None, kueue_missing="no workloads.kueue.x-k8s.io")
    assert a.waiting and a.reason == "KueueUnavailable"


def test_a_workload_someone_else_deactivated_says_how_to_reactivate():
    a = q.admission(job(), workload(("QuotaReserved", "False", "Pending", "x"), active=False))
    assert a.reason == "Deactivated" and "kubectl patch workload" in a.message


def test_the_jobs_own_newest_unfinished_workload_is_picked():
    old = workload(("Finished", "True", "Succeeded", ""), name="old", created="2026-01-01T00:00:00Z")
    new = workload(name="new", created="2026-01-02T00:00:00Z")
    other = workload(name="other", owner="someone-else", created="2026-01-03T00:00:00Z")
    assert q.pick_workload("job-uid", [old, new, other])["metadata"]["name"] == "new"
    assert q.pick_workload("job-uid", [other]) is None


def test_nova_never_unsuspends_a_queued_job():
    for wl in (None, PENDING, ADMITTED, workload(active=False, held=True)):
        for suspend in (True, False):
            patches = q.follow_suspend(suspend, job(suspend=True), wl)
            assert (patches.job or {}).get("spec", {}).get("suspend") is not False


def test_user_suspend_deactivates_the_workload_and_marks_the_hold_as_novas():
    p = q.follow_suspend(True, job(suspend=False), ADMITTED)
    assert p.workload == {"metadata": {"annotations": {q.HOLD_ANNOTATION: "true"}}, "spec": {"active": False}}
    # admitted: Kueue stops the Job once the Workload is inactive; a suspend now would be undone
    assert p.job is None
    # not admitted (or no Workload yet): the Job is suspended by Nova too
    assert q.follow_suspend(True, job(suspend=False), PENDING).job == {"spec": {"suspend": True}}
    assert q.follow_suspend(True, job(suspend=False), None).job == {"spec": {"suspend": True}}
    # already held and suspended: nothing more
    assert q.follow_suspend(True, job(suspend=True), workload(active=False, held=True)) == q.Patches()


def test_resume_lifts_only_novas_own_hold_and_leaves_admission_to_kueue():
    p = q.follow_suspend(False, job(suspend=True), workload(active=False, held=True))
    assert p.workload == {"metadata": {"annotations": {q.HOLD_ANNOTATION: None}}, "spec": {"active": True}}
    assert p.job is None  # still suspended: Kueue starts it when it admits the Workload again
    # a Workload deactivated by someone else (an admin, Kueue's requeue limit) stays so
    assert q.follow_suspend(False, job(), workload(active=False)) == q.Patches()


def test_a_job_created_while_suspended_is_released_to_kueue_on_resume():
    held = job(released=False)
    assert q.admission(held, None).reason == "Held"
    assert q.follow_suspend(True, held, None) == q.Patches()
    assert q.follow_suspend(False, held, None).job == {"metadata": {"labels": {b.QUEUE_LABEL: "gpus"}}}
