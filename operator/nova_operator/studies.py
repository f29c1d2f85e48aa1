"""The operator's side of the Optuna storage: create each symbol's study as the run starts (a worker
that gets there first makes it itself: both use load-if-exists semantics), read progress for
status, delete studies on request.

Only optuna and SQLAlchemy: the operator's image has no xgboost and no nova_trainer. Counting
matches the trainer's budget rule (nova_trainer.tuning.budget): a FAIL replaced by a retry does not
count. Storages are cached per URL, with a small pool, so 200 runs cost one connection pool."""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
import optuna
import sqlalchemy.exc
from optuna.trial import TrialState

from nova.errors import StorageError
from nova.secrets import host_of, mask
from nova.spec import ResolvedRun
from nova.storage_url import grpc_address, normalize
from nova_operator.settings import HANDLER_THREADS
from nova_operator.status import StudyProgress

log = logging.getLogger(__name__)
optuna.logging.set_verbosity(optuna.logging.WARNING)

PERMANENT_HINTS = ("password authentication failed", "does not exist", "no password supplied",
                   "permission denied", "role ")
# Database connections per storage: a pass holds one only for its study insert or trial read, a
# fraction of its time, so 32 handler threads peaked at 13 connections under 200 new runs; the cap
# keeps the operator's share of max_connections small beside the workers'.
DB_POOL = min(HANDLER_THREADS, 16)
_storages: dict[str, optuna.storages.BaseStorage] = {}
_lock = threading.Lock()
normalize_url = normalize  # the trainer's spelling rules (nova.storage_url)


def describe(exc: BaseException) -> str:
    """The driver's first line, password masked."""
    if isinstance(exc, grpc.RpcError):
        return mask(f"gRPC {exc.code().name}: {exc.details()}")  # type: ignore[attr-defined]
    inner = getattr(exc, "orig", None) or exc
    text = str(inner).strip()
    return mask(text.splitlines()[0]) if text else type(inner).__name__


def is_permanent(exc: BaseException) -> bool:
    """A wrong password or a missing database will not fix itself; a refused connection may."""
    return any(h in describe(exc) for h in PERMANENT_HINTS)


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """One cached storage per URL; raises StorageError naming the host, never the password.

    A grpc:// URL (the chart's Optuna proxy) works too; the chart itself gives the operator the
    database URL and the workers the proxy's, so status reads do not queue behind worker traffic."""
    url = normalize_url(url)
    with _lock:
        if url in _storages:
            return _storages[url]
        if (address := grpc_address(url)) is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = optuna.storages.GrpcStorageProxy(host=address[0], port=address[1])
            _storages[url] = storage
            return storage
        # one pool for every run on this URL, DB_POOL connections at most. No pre-ping: it cost a
        # round trip per checkout, a third of all the operator's database time under 200 runs; a
        # connection the server dropped fails once, SQLAlchemy then invalidates the pool and
        # `_with_reconnect` runs it again.
        kwargs: dict[str, Any] = {"pool_size": DB_POOL // 2, "max_overflow": DB_POOL - DB_POOL // 2,
                                  "pool_recycle": 300,
                                  "connect_args": {"connect_timeout": 5}}
        if url.startswith("sqlite"):
            kwargs = {"connect_args": {"timeout": 30}}
        try:
            storage = optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        except Exception as exc:  # noqa: BLE001 - any driver error is reported, masked
            err = StorageError(f"cannot use the Optuna storage at {host_of(url)}: {describe(exc)}")
            err.permanent = is_permanent(exc)  # type: ignore[attr-defined]
            raise err from None
        _storages[url] = storage
        return storage


def warm_up(url: str | None = None) -> None:
    """Load the storage stack at start-up: Optuna imports SQLAlchemy's dialects and alembic lazily,
    at the first storage it opens. Done by the first new run instead, that cost 2 s under a burst of
    200 runs, with every handler thread queued on the storage lock (bench/operator_scale.py).
    Opens `url` too when the operator has its own (NOVA_OPERATOR_STORAGE_URL); a failure there is
    only logged, each run reports it."""
    import sqlalchemy.dialects.postgresql  # noqa: F401
    try:
        import sqlalchemy.dialects.postgresql.psycopg  # noqa: F401
    except ImportError:  # no psycopg: postgresql URLs fail later, with the run's own message
        pass
    optuna.storages.RDBStorage("sqlite:///:memory:")  # alembic, Optuna's models, the version check
    if url:
        try:
            open_storage(url)
        except StorageError as exc:
            log.warning("the operator's storage is not usable yet: %s", exc)


def forget(url: str) -> None:
    """Drop a cached storage (after errors), so the next call reconnects from scratch."""
    with _lock:
        storage = _storages.pop(normalize_url(url), None)
    if storage is not None:
        try:
            if isinstance(storage, optuna.storages.GrpcStorageProxy):
                storage.close()
            else:
                storage.engine.dispose()
        except Exception:  # noqa: BLE001
            pass


T = TypeVar("T")


def _with_reconnect(action: Callable[[], T]) -> T:
    """Run a storage action; once more if the server had dropped the pooled connection."""
    try:
        return action()
    except sqlalchemy.exc.DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        log.info("database connection was dropped (%s); reconnecting", describe(exc))
        return action()


def create_studies(run: ResolvedRun, storage: optuna.storages.BaseStorage) -> list[str]:
    """Create every symbol's study (idempotent: an existing one is kept, never reset); returns the
    names of the studies made now, so a caller knows they hold no trial yet without reading them.

    One insert per study through the storage API (`optuna.create_study` reads it back afterwards);
    the study's attributes (budget, metric, symbol, for the dashboard) are the trainer's to write
    when it opens the study (nova_trainer.tuning.study), so a burst of new runs costs the database
    one transaction per symbol here."""
    direction = (optuna.study.StudyDirection.MAXIMIZE if run.spec.tuning.resolved_direction == "maximize"
                 else optuna.study.StudyDirection.MINIMIZE)
    made = []
    for symbol in run.spec.data.symbols:
        name = run.study_name(symbol)

        def create() -> tuple[int, bool]:
            try:
                return storage.create_new_study([direction], name), True
            except optuna.exceptions.DuplicatedStudyError:
                return storage.get_study_id_from_name(name), False

        study_id, new = _with_reconnect(create)
        _ids[(id(storage), name)] = (study_id, direction == optuna.study.StudyDirection.MAXIMIZE)
        if new:
            made.append(name)
    return made


# (storage, study name) -> (study id, maximize): neither changes while the study lives, so a status
# pass reads only the trials; a study deleted and made again under the same name gets a new id, and
# the stale entry is dropped at its first KeyError.
_ids: dict[tuple[int, str], tuple[int, bool]] = {}


def _study_id(storage: optuna.storages.BaseStorage, name: str) -> tuple[int, bool]:
    key = (id(storage), name)
    if key not in _ids:
        study_id = storage.get_study_id_from_name(name)
        maximize = storage.get_study_directions(study_id)[0] == optuna.study.StudyDirection.MAXIMIZE
        _ids[key] = (study_id, maximize)
    return _ids[key]


def _trials(storage: optuna.storages.BaseStorage, name: str) -> tuple[list[optuna.trial.FrozenTrial], bool]:
    """(trials, maximize) of a study; KeyError when there is no such study."""
    study_id, maximize = _study_id(storage, name)
    try:
        return storage.get_all_trials(study_id, deepcopy=False), maximize
    except KeyError:  # deleted since its id was cached, maybe made again under the same name
        _ids.pop((id(storage), name), None)
        study_id, maximize = _study_id(storage, name)
        return storage.get_all_trials(study_id, deepcopy=False), maximize


def empty_progress(run: ResolvedRun) -> list[StudyProgress]:
    """The progress of studies just made: nothing to read back."""
    return [StudyProgress(symbol=s, study=run.study_name(s)) for s in run.spec.data.symbols]


def read_progress(run: ResolvedRun, storage: optuna.storages.BaseStorage) -> list[StudyProgress]:
    """Counts and best trial of every symbol's study; a study not created yet reads as empty."""
    def read() -> list[StudyProgress]:
        out = []
        for symbol in run.spec.data.symbols:
            name = run.study_name(symbol)
            try:
                trials, maximize = _trials(storage, name)
            except KeyError:
                out.append(StudyProgress(symbol=symbol, study=name, exists=False))
                continue
            out.append(summarize(symbol, name, trials, maximize))
        return out

    return _with_reconnect(read)


def summarize(symbol: str, name: str, trials: list[optuna.trial.FrozenTrial], maximize: bool) -> StudyProgress:
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    counts = {s: 0 for s in TrialState}
    failed = 0
    best = None
    for t in trials:
        counts[t.state] += 1
        if t.state == TrialState.FAIL and t.number not in retried:
            failed += 1
        if t.state == TrialState.COMPLETE and t.value is not None:
            if best is None or (t.value > best.value if maximize else t.value < best.value):
                best = t
    return StudyProgress(symbol=symbol, study=name, complete=counts[TrialState.COMPLETE],
                         pruned=counts[TrialState.PRUNED], failed=failed, running=counts[TrialState.RUNNING],
                         waiting=counts[TrialState.WAITING], best_value=best.value if best else None,
                         best_params=dict(best.params) if best else {})


def delete_studies(run: ResolvedRun, storage: optuna.storages.BaseStorage) -> list[str]:
    deleted = []
    for symbol in run.spec.data.symbols:
        try:
            optuna.delete_study(study_name=run.study_name(symbol), storage=storage)
            _ids.pop((id(storage), run.study_name(symbol)), None)
            deleted.append(run.study_name(symbol))
        except KeyError:
            continue
    return deleted


TRANSIENT = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, sqlalchemy.exc.DBAPIError)
