"""Where studies live: PostgreSQL (psycopg 3) in a cluster, SQLite in the run folder locally.

Heartbeats let a live worker find a trial whose worker died (no heartbeat for `graceSeconds`): it
is marked FAIL and re-queued once (RetryHeartbeatStaleTrialCallback); so is one that never recorded a
heartbeat at all (rdb_storage.py). Connections are few per
worker (pool of 1 plus 1 overflow, pre-pinged so a restarted database is noticed) so that many
workers fit under `max_connections`; with a grpc:// URL workers talk to the chart's Optuna gRPC
proxy instead and hold no database connection at all (heartbeats: grpc_storage.py). The URL is
never printed: errors name the host only."""

from __future__ import annotations

import logging
import os
import time
import warnings
from pathlib import Path

import grpc
import optuna
import sqlalchemy
import sqlalchemy.exc

from nova.errors import StorageError
from nova.secrets import host_of, mask
from nova.storage_url import grpc_address, normalize
from nova_trainer.tuning.grpc_storage import GrpcHeartbeatStorage
from nova_trainer.tuning.rdb_storage import HeartbeatRDBStorage

log = logging.getLogger(__name__)

STORAGE_URL_ENV = "NOVA_STORAGE_URL"
# Optuna wraps a failed commit (e.g. the server restarting under it) in StorageInternalError.
TRANSIENT = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, sqlalchemy.exc.DBAPIError,
             optuna.exceptions.StorageInternalError)
PERMANENT_HINTS = ("password authentication failed", "does not exist", "no password supplied",
                   "role", "permission denied")
# a gRPC proxy restarting (UNAVAILABLE), slow (DEADLINE_EXCEEDED), or its database failing (UNKNOWN)
TRANSIENT_GRPC = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                  grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNKNOWN)


def is_transient(exc: BaseException) -> bool:
    """A database or proxy error that may go away if we wait (one exception, not its chain)."""
    if isinstance(exc, TRANSIENT):
        return True
    return isinstance(exc, grpc.RpcError) and exc.code() in TRANSIENT_GRPC  # type: ignore[attr-defined]


def resolve_url(run_dir: Path | None = None) -> str:
    """$NOVA_STORAGE_URL, or the embedded SQLite file of a local run."""
    url = os.environ.get(STORAGE_URL_ENV)
    if url:
        return normalize(url)
    if run_dir is None:
        raise StorageError(f"no Optuna storage: set ${STORAGE_URL_ENV} (from tuning.storage.secretRef in a cluster)")
    run_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(run_dir / 'optuna.db').resolve()}"


def engine_kwargs(url: str) -> dict:
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 60}}
    return {"pool_size": 1, "max_overflow": 1, "pool_pre_ping": True, "pool_recycle": 300,
            "connect_args": {"connect_timeout": 10}}


def open_storage(url: str, heartbeat_seconds: int, grace_seconds: int, attempts: int = 5,
                 backoff_seconds: float = 1.0) -> optuna.storages.BaseStorage:
    """Open the storage, retrying transient errors with backoff; a wrong password fails at once."""
    url = normalize(url)
    for attempt in range(1, attempts + 1):
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental"; we rely on them knowingly
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                if (address := grpc_address(url)) is not None:
                    return _grpc(address, heartbeat_seconds, grace_seconds)
                storage = HeartbeatRDBStorage(
                    url, engine_kwargs=engine_kwargs(url), heartbeat_interval=heartbeat_seconds,
                    grace_period=grace_seconds,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1))
            return _tuned(storage)
        except (*TRANSIENT, grpc.RpcError) as exc:
            if not is_transient(exc):
                raise StorageError(f"cannot use the Optuna storage at {host_of(url)}: {describe(exc)}") from None
            reason = describe(exc)
            if any(h in reason for h in PERMANENT_HINTS) or attempt == attempts:
                raise StorageError(f"cannot use the Optuna storage at {host_of(url)}: {reason}") from None
            log.warning("storage at %s not ready (%s); retry %d/%d", host_of(url), reason, attempt, attempts)
            time.sleep(backoff_seconds * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


def _grpc(address: tuple[str, int], heartbeat_seconds: int, grace_seconds: int) -> GrpcHeartbeatStorage:
    storage = GrpcHeartbeatStorage(*address, heartbeat_seconds=heartbeat_seconds, grace_seconds=grace_seconds,
                                   stale_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1))
    try:  # a cheap round trip, so an unreachable proxy fails here with its address, not mid-trial
        storage.get_study_id_from_name("nova: connection check")
    except KeyError:
        pass
    return storage


def _tuned(storage: optuna.storages.RDBStorage) -> optuna.storages.RDBStorage:
    """SQLite: write-ahead log and NORMAL sync, so a per-round report costs ~5 ms instead of ~26 ms
    (a commit per report) and readers do not block the writer of another worker."""
    if storage.engine.dialect.name == "sqlite":
        def on_connect(dbapi_connection, _record) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        sqlalchemy.event.listen(storage.engine, "connect", on_connect)
        storage.engine.dispose()  # reconnect with the pragmas
    return storage


def describe(exc: BaseException) -> str:
    """The first line of the driver's message, with any password masked."""
    if isinstance(exc, grpc.RpcError):
        return mask(f"gRPC {exc.code().name}: {exc.details()}")  # type: ignore[attr-defined]
    inner = getattr(exc, "orig", None) or exc
    text = str(inner).strip().splitlines()[0] if str(inner).strip() else type(inner).__name__
    return mask(text)
