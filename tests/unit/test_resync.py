"""The operator's periodic status pass: which runs are due, in what order, how many at once."""

from __future__ import annotations

import threading

from nova_operator.resync import Resync, ResyncLoop, newer


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def run(uid: str, rv: str = "10", phase: str | None = None) -> dict:
    return {"metadata": {"uid": uid, "name": uid, "namespace": "ns", "resourceVersion": rv},
            "status": {"phase": phase} if phase else {}}


def test_a_new_run_is_first_due_one_interval_after_it_was_seen():
    clock = Clock()
    resync = Resync(10, clock)
    resync.seen(run("a"))
    assert resync.take_due(5) == []
    clock.now += 10
    assert [b["metadata"]["uid"] for b in resync.take_due(5)] == ["a"]


def test_a_run_being_passed_is_not_handed_out_again_until_done():
    clock = Clock()
    resync = Resync(10, clock)
    resync.seen(run("a"))
    clock.now += 10
    assert len(resync.take_due(5)) == 1
    clock.now += 30
    assert resync.take_due(5) == []  # still busy, however overdue
    resync.done("a")
    assert resync.take_due(5) == []  # due again one interval after the pass ended
    clock.now += 10
    assert len(resync.take_due(5)) == 1


def test_the_most_overdue_runs_go_first_and_no_more_than_the_limit():
    clock = Clock()
    resync = Resync(10, clock)
    for uid in ("a", "b", "c"):
        resync.seen(run(uid))
        clock.now += 1
    clock.now += 20
    assert [b["metadata"]["uid"] for b in resync.take_due(2)] == ["a", "b"]
    assert [b["metadata"]["uid"] for b in resync.take_due(2)] == ["c"]


def test_an_older_event_never_replaces_a_newer_body():
    resync = Resync(10, Clock())
    resync.seen(run("a", rv="20", phase="Preparing"))  # the operator's own status patch, as stored
    resync.seen(run("a", rv="15"))  # a watch event from before it, delivered late
    assert resync.body("a")["status"] == {"phase": "Preparing"}
    resync.seen(run("a", rv="21", phase="Running"))
    assert resync.body("a")["status"] == {"phase": "Running"}
    assert newer(run("a", rv="x"), run("a", rv="20"))  # not numbers: take the newest delivered


def test_a_forgotten_run_is_never_due():
    clock = Clock()
    resync = Resync(10, clock)
    resync.seen(run("a"))
    resync.forget("a")
    clock.now += 60
    assert resync.take_due(5) == [] and len(resync) == 0
    resync.done("a")  # a pass that ends after the run went is harmless


def test_the_loop_never_runs_more_passes_than_its_slots():
    clock = Clock()
    resync = Resync(10, clock)
    for i in range(5):
        resync.seen(run(f"r{i}"))
    clock.now += 10
    pending: list = []
    loop = ResyncLoop(resync, lambda body, done: pending.append(done), slots=2)
    loop.dispatch()
    assert len(pending) == 2
    loop.dispatch()
    assert len(pending) == 2  # both slots taken: nothing more handed out
    pending.pop()()  # one pass ends
    loop.dispatch()
    assert len(pending) == 2


def test_the_loop_thread_hands_out_due_runs_and_stops():
    resync = Resync(0.2)
    resync.seen(run("a"))
    passed = threading.Event()

    def submit(body: dict, done) -> None:
        passed.set()
        done()

    loop = ResyncLoop(resync, submit, slots=1)
    loop.start()
    try:
        assert passed.wait(5)
    finally:
        loop.stop()
        loop.join(5)
    assert not loop.is_alive()
