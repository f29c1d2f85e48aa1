"""The operator's process-wide knobs, read once at start-up (main.py) from its flags and its
environment (the chart sets them), and handed to the handlers in kopf's memo (context.py).

handler_threads: threads running reconcile passes (kopf's executor). A pass mostly waits on the API
server and the database (three round trips for a new run: ConfigMap, studies, Job), so threads,
not CPU, bound how fast a burst of new runs gets its Jobs: under 200 runs applied at once on 2
cores, p95 apply -> Job went from 4.3 s with 12 threads to 2.2-2.9 s with 24-48
(bench/operator_scale.py). The database pool is capped apart from them (`db_pool`).
status_interval: seconds between status passes over a run."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_HANDLER_THREADS = 32
DEFAULT_STATUS_INTERVAL = 10.0
OPERATOR_STORAGE_URL_ENV = "NOVA_OPERATOR_STORAGE_URL"


@dataclass(frozen=True)
class Settings:
    handler_threads: int = DEFAULT_HANDLER_THREADS
    status_interval: float = DEFAULT_STATUS_INTERVAL
    operator_storage_url: str | None = None  # the operator's own way to the database, if not the pods'

    @property
    def db_pool(self) -> int:
        """Database connections per storage: a pass holds one only for its study insert or trial
        read, a fraction of its time, so 32 handler threads peaked at 13 connections under 200 new
        runs; the cap keeps the operator's share of max_connections small beside the workers'."""
        return min(self.handler_threads, 16)

    @property
    def resync_slots(self) -> int:
        """Status passes take at most a quarter of the handler threads, so a burst of new runs
        always has threads to create their Jobs instead of queueing behind the passes before."""
        return max(2, self.handler_threads // 4)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, status_interval: float | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(handler_threads=int(env.get("NOVA_OPERATOR_WORKERS") or DEFAULT_HANDLER_THREADS),
                   status_interval=status_interval or float(env.get("NOVA_STATUS_INTERVAL") or DEFAULT_STATUS_INTERVAL),
                   operator_storage_url=env.get(OPERATOR_STORAGE_URL_ENV) or None)
