"""The operator's Prometheus metrics, served at :$NOVA_METRICS_PORT/metrics (prometheus-client).

Runs by phase and trials per run are gauges computed at scrape time from what the reconcile passes
last saw (so a deleted run drops out at once); reconcile duration and errors are recorded per pass.
One registry per operator process; `MetricsState` is a plain object so tests read it directly."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import get_args

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from nova.status import Phase

PHASES: tuple[str, ...] = get_args(Phase)  # every phase a run can show, one series each
_TRIALS = re.compile(r"^(\d+)/(\d+)$")


@dataclass
class RunView:
    namespace: str
    name: str
    phase: str
    finished: int | None
    budget: int | None


class MetricsState(Collector):
    """What the last pass of each run said, keyed by uid; collected into gauges on each scrape."""

    def __init__(self) -> None:
        self._runs: dict[str, RunView] = {}
        self._lock = threading.Lock()

    def observe(self, uid: str, namespace: str, name: str, status: dict) -> None:
        match = _TRIALS.match(str(status.get("trials") or ""))
        view = RunView(namespace, name, status.get("phase") or "Pending",
                       int(match[1]) if match else None, int(match[2]) if match else None)
        with self._lock:
            self._runs[uid] = view

    def forget(self, uid: str) -> None:
        with self._lock:
            self._runs.pop(uid, None)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            runs = list(self._runs.values())
        phases = GaugeMetricFamily("nova_trainingruns", "TrainingRuns by phase", labels=["phase"])
        for phase in PHASES:
            phases.add_metric([phase], sum(1 for r in runs if r.phase == phase))
        yield phases
        finished = GaugeMetricFamily("nova_trials_finished", "Finished trials of a run (complete, pruned, "
                                     "failed after retries), all symbols", labels=["namespace", "trainingrun"])
        budget = GaugeMetricFamily("nova_trials_budget", "Trial budget of a run, all symbols",
                                   labels=["namespace", "trainingrun"])
        for r in runs:
            if r.finished is not None and r.budget is not None:
                finished.add_metric([r.namespace, r.name], r.finished)
                budget.add_metric([r.namespace, r.name], r.budget)
        yield finished
        yield budget


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.runs = MetricsState()
        self.registry.register(self.runs)
        self.reconcile_seconds = Histogram(
            "nova_reconcile_duration_seconds", "Time of one reconcile pass of a TrainingRun",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=self.registry)
        self.reconcile_errors = Counter("nova_reconcile_errors", "Reconcile passes that raised, by exception type",
                                        ["error"], registry=self.registry)

    @contextmanager
    def reconciling(self) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        except Exception as exc:
            self.reconcile_errors.labels(type(exc).__name__).inc()
            raise
        finally:
            self.reconcile_seconds.observe(time.perf_counter() - started)

    def serve(self, port: int, address: str = "0.0.0.0") -> None:
        start_http_server(port, addr=address, registry=self.registry)


METRICS = OperatorMetrics()
