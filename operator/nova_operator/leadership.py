"""Leader election on a coordination.k8s.io Lease, so the chart can run a standby operator.

kopf's own peering pauses operators of lower priority but does not guarantee one writer (two of the
same priority both pause, and a partitioned one keeps going), so Nova uses a Lease as
controller-runtime does, through the Kubernetes client's own `leaderelection` (client-go's rules:
a follower takes a Lease whose holder has not renewed it for `lease_seconds` of the follower's own
clock). On top of it, one rule that makes a lost Lease safe: the leader checks every second that it
renewed within `renew_deadline`, and if not (the API server unreachable, a renewal hanging), it
exits at once, before any follower can take the Lease (`renew_deadline` < `lease_seconds`). In a
pod it comes back as a follower.
"""

from __future__ import annotations

import datetime as dt
import http.server
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.leaderelection.electionconfig import Config
from kubernetes.leaderelection.leaderelection import LeaderElection
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock

log = logging.getLogger(__name__)
logging.getLogger("leaderelection").setLevel(logging.WARNING)  # it logs every retry at INFO


def _exit_now() -> None:
    os._exit(1)  # no cleanup: nothing more may reach the API server from this process


@dataclass(frozen=True)
class LeaseSettings:
    name: str = "nova-operator"
    namespace: str = "default"
    lease_seconds: int = 15
    renew_deadline: int = 10
    retry_seconds: int = 2

    @classmethod
    def from_env(cls, name: str | None = None) -> LeaseSettings:
        namespace = os.environ.get("POD_NAMESPACE") or "default"
        return cls(name=name or os.environ.get("NOVA_LEASE_NAME") or cls.name, namespace=namespace)


class Leadership:
    def __init__(self, settings: LeaseSettings, identity: str | None = None,
                 on_lost: Callable[[], None] = _exit_now, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.identity = identity or f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"
        self._on_lost, self._clock = on_lost, clock
        self._lock = LeaseLock(settings.name, settings.namespace, self.identity)
        self._election = LeaderElection(Config(self._lock, settings.lease_seconds, settings.renew_deadline,
                                               settings.retry_seconds, onstarted_leading=lambda: None,
                                               onstopped_leading=lambda: None))
        self._renewed = 0.0
        self._stop = threading.Event()

    def acquire(self) -> None:
        """Block until this process holds the Lease."""
        log.info("waiting to lead (Lease %s/%s, as %s)", self.settings.namespace, self.settings.name, self.identity)
        while not self._try():
            time.sleep(self.settings.retry_seconds)
        log.info("leading as %s (Lease %s/%s)", self.identity, self.settings.namespace, self.settings.name)

    def _try(self) -> bool:
        try:
            ok = bool(self._election.try_acquire_or_renew())
        except Exception as exc:  # noqa: BLE001 - an unreachable API server is a failed attempt
            log.warning("Lease %s not renewed: %s", self.settings.name, exc)
            ok = False
        if ok:
            self._renewed = self._clock()
        return ok

    def keep(self) -> None:
        """Renew in the background; a watchdog ends the process once a renewal is overdue."""
        threading.Thread(target=self._renew, name="lease-renew", daemon=True).start()
        threading.Thread(target=self._watch, name="lease-watchdog", daemon=True).start()

    def _renew(self) -> None:
        while not self._stop.wait(self.settings.retry_seconds):
            self._try()

    def _watch(self) -> None:
        while not self._stop.wait(1.0):
            overdue = self._clock() - self._renewed
            if overdue > self.settings.renew_deadline:
                log.error("lost the Lease %s/%s (not renewed for %.0f s): stopping now, before another operator "
                          "may take it", self.settings.namespace, self.settings.name, overdue)
                self._on_lost()
                return

    def release(self) -> None:
        """On a clean stop: hand the Lease over at once instead of after lease_seconds."""
        self._stop.set()
        api = client.CoordinationV1Api()
        try:
            lease = api.read_namespaced_lease(self.settings.name, self.settings.namespace)
            if lease.spec and lease.spec.holder_identity == self.identity:
                lease.spec.holder_identity = ""
                lease.spec.lease_duration_seconds = 1
                lease.spec.renew_time = dt.datetime.now(dt.UTC)
                api.replace_namespaced_lease(self.settings.name, self.settings.namespace, lease)
                log.info("released the Lease %s/%s", self.settings.namespace, self.settings.name)
        except ApiException as exc:
            log.warning("Lease %s not released (%s): a standby takes it after %d s", self.settings.name,
                        exc.reason, self.settings.lease_seconds)


@contextmanager
def health_while_waiting(liveness: str | None) -> Iterator[None]:
    """A follower serves the liveness URL itself (kopf serves it once leading), so the standby's
    probes pass while it waits; the port is freed before kopf binds it."""
    if not liveness:
        yield
        return
    url = urlsplit(liveness)
    path = url.path or "/healthz"

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            ok = self.path.split("?")[0] == path
            self.send_response(200 if ok else 404)
            self.end_headers()
            self.wfile.write(b'{"leader": false}' if ok else b"")

        def log_message(self, *_: object) -> None:
            return None

    server = http.server.ThreadingHTTPServer((url.hostname or "0.0.0.0", url.port or 8080), Health)
    thread = threading.Thread(target=server.serve_forever, name="follower-health", daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
