"""Everything the operator keeps while it runs, in one object built at start-up and handed to
every handler through kopf's memo: its settings, its API and storage clients, and the per-run
bookkeeping (one pass at a time per run, which generation this process already decided for)."""

from __future__ import annotations

import threading
from concurrent.futures import Executor
from dataclasses import dataclass, field

from nova_operator.builders import OperatorConfig
from nova_operator.kube import Kube
from nova_operator.resync import Resync, ResyncLoop
from nova_operator.scheduling import ScheduleLoop
from nova_operator.settings import Settings
from nova_operator.studies import Studies


@dataclass
class OperatorContext:
    settings: Settings
    kube: Kube
    cfg: OperatorConfig
    studies: Studies
    resync: Resync
    executor: Executor | None = None
    resync_loop: ResyncLoop | None = None
    schedules: ScheduleLoop | None = None  # the TrainingSchedule controller (scheduling.py)
    # uid -> the generation this process last decided a status for: the events that arrive before
    # that status is stored must not start another pass
    handled: dict[str, int | None] = field(default_factory=dict)
    _locks: dict[str, threading.Lock] = field(default_factory=dict)
    _locks_guard: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def start(cls, settings: Settings, kube: Kube, executor: Executor | None = None) -> OperatorContext:
        return cls(settings=settings, kube=kube, cfg=OperatorConfig.from_env(), studies=Studies(settings.db_pool),
                   resync=Resync(settings.status_interval), executor=executor)

    def lock(self, uid: str) -> threading.Lock:
        """One pass at a time per run: the event handler and the resync may fire together."""
        with self._locks_guard:
            return self._locks.setdefault(uid, threading.Lock())

    def forget(self, uid: str) -> None:
        """A run that is gone: drop what this process kept for it."""
        self.resync.forget(uid)
        self.handled.pop(uid, None)
        with self._locks_guard:
            self._locks.pop(uid, None)
