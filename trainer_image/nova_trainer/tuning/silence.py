"""Telling a dead worker's trial from a live one without trusting anyone's wall clock.

A trial is called stale when this process has seen its heartbeat value unchanged for
`grace_seconds` of its own monotonic clock. Comparing values, not timestamps, keeps pods with
skewed clocks out of it; the price is that a worker that has just started waits one grace period
before it can call anything stale. Used by the gRPC storage (whose heartbeat is a trial attribute)
and for RDB trials that never recorded a heartbeat at all (see rdb_storage.py)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping


class SilenceWatch:
    def __init__(self, grace_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._grace, self._clock = grace_seconds, clock
        self._seen: dict[int, dict[int, tuple[object, float]]] = {}  # study -> trial -> (beat, first seen)

    def stale(self, study_id: int, beats: Mapping[int, object]) -> list[int]:
        """The trials among `beats` (every RUNNING trial of the study: id -> its last heartbeat
        value) whose value has not changed for the grace period."""
        now = self._clock()
        seen = self._seen.setdefault(study_id, {})
        stale = []
        for trial_id, beat in beats.items():
            last = seen.get(trial_id)
            if last is None or last[0] != beat:
                seen[trial_id] = (beat, now)
            elif now - last[1] > self._grace:
                stale.append(trial_id)
        for trial_id in set(seen) - set(beats):
            del seen[trial_id]
        return stale
