"""The operator's side of the Optuna storage: create each symbol's study as the run starts (a worker
that gets there first makes it itself: both use load-if-exists semantics), read progress for
status, delete studies on request.

Only optuna and SQLAlchemy: the operator's image has no xgboost and no nova_trainer. Trials are
counted by the contract's budget rule (nova.budget), the trainer's own. Storages are cached per URL,
with a small pool, so 200 runs cost one connection pool. Driver errors leave this module as
StorageError (nova.storage_errors judges whether they are permanent).

`Studies` holds the operator's storage state (the storages per URL, study ids), one per operator
(in its context); the rest are pure functions of the trials read."""

from __future__ import annotations

import functools
import logging
import threading
import warnings
from collections.abc import Callable
from typing import Any

import optuna
import sqlalchemy.exc

from nova.budget import count_trials
from nova.errors import StorageError
from nova.spec import ResolvedRun
from nova.storage_errors import describe, is_driver_error, storage_error
from nova.storage_url import grpc_address, normalize
from nova.study_identity import FINGERPRINT_ATTR, check, fingerprint
from nova.warm_start import WARM_START_ATTR, WarmStartPlan, plan, source_study_name
from nova_operator.decision import StudyProgress

log = logging.getLogger(__name__)
optuna.logging.set_verbosity(optuna.logging.WARNING)


class Studies:
    """The operator's Optuna storages, one per URL with a pool of at most `db_pool` connections, so
    200 runs on one database cost one pool; and each study's id, read once."""

    def __init__(self, db_pool: int = 16) -> None:
        self.db_pool = db_pool
        self._storages: dict[str, optuna.storages.BaseStorage] = {}
        self._lock = threading.Lock()
        # (storage, study name) -> (study id, maximize): neither changes while the study lives, so
        # a status pass reads only the trials; a study deleted and made again under the same name
        # gets a new id, and the stale entry is dropped at its first KeyError.
        self._ids: dict[tuple[int, str], tuple[int, bool]] = {}

    def open_storage(self, url: str) -> optuna.storages.BaseStorage:
        """One cached storage per URL; raises StorageError naming the host, never the password.

        A grpc:// URL (the chart's Optuna proxy) works too; the chart itself gives the operator the
        database URL and the workers the proxy's, so status reads do not queue behind worker traffic."""
        url = normalize(url)
        with self._lock:
            if url in self._storages:
                return self._storages[url]
            if (address := grpc_address(url)) is not None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    storage: optuna.storages.BaseStorage = optuna.storages.GrpcStorageProxy(
                        host=address[0], port=address[1])
                self._storages[url] = storage
                return storage
            # one pool for every run on this URL. No pre-ping: it cost a round trip per checkout, a
            # third of all the operator's database time under 200 runs; a connection the server
            # dropped fails once, SQLAlchemy then invalidates the pool and `_with_reconnect` runs
            # it again.
            kwargs: dict[str, Any] = {"pool_size": self.db_pool // 2, "max_overflow": self.db_pool - self.db_pool // 2,
                                      "pool_recycle": 300, "connect_args": {"connect_timeout": 5}}
            if url.startswith("sqlite"):
                kwargs = {"connect_args": {"timeout": 30}}
            try:
                storage = optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
            except Exception as exc:  # noqa: BLE001 - any driver error is reported, masked
                raise storage_error(url, exc) from None
            self._storages[url] = storage
            return storage

    def warm_up(self, url: str | None = None) -> None:
        """Load the storage stack at start-up: Optuna imports SQLAlchemy's dialects and alembic
        lazily, at the first storage it opens. Done by the first new run instead, that cost 2 s under
        a burst of 200 runs, with every handler thread queued on the storage lock
        (bench/operator_scale.py). Opens `url` too when the operator has its own
        (NOVA_OPERATOR_STORAGE_URL); a failure there is only logged, each run reports it."""
        import sqlalchemy.dialects.postgresql  # noqa: F401 - imported for its side effect: the dialect loads
        try:
            import sqlalchemy.dialects.postgresql.psycopg  # noqa: F401 - same: the driver's dialect
        except ImportError:  # no psycopg: postgresql URLs fail later, with the run's own message
            pass
        optuna.storages.RDBStorage("sqlite:///:memory:")  # alembic, Optuna's models, the version check
        if url:
            try:
                self.open_storage(url)
            except StorageError as exc:
                log.warning("the operator's storage is not usable yet: %s", exc)

    def forget(self, url: str) -> None:
        """Drop a cached storage (after errors), so the next call reconnects from scratch."""
        with self._lock:
            storage = self._storages.pop(normalize(url), None)
        if storage is None:
            return
        try:
            if isinstance(storage, optuna.storages.GrpcStorageProxy):
                storage.close()
            elif isinstance(storage, optuna.storages.RDBStorage):
                storage.engine.dispose()
        except Exception:  # noqa: BLE001 - a storage being dropped after errors may fail to close
            pass

    def create_studies(self, run: ResolvedRun, storage: optuna.storages.BaseStorage) -> list[str]:
        """Create every symbol's study (idempotent: an existing one is kept, never reset); returns
        the names of the studies made now, so a caller knows they hold no trial yet without reading.
        A study made now gets the fingerprint of what its trials measure; an existing one must
        carry this run's (study_identity.StudyMismatch otherwise).

        One insert per study through the storage API (`optuna.create_study` reads it back
        afterwards); the study's attributes (budget, metric, symbol, for the dashboard) are the
        trainer's to write when it opens the study (nova_trainer.tuning.study), so a burst of new
        runs costs the database one transaction per symbol here."""
        maximize = run.spec.tuning.resolved_direction == "maximize"
        direction = optuna.study.StudyDirection.MAXIMIZE if maximize else optuna.study.StudyDirection.MINIMIZE
        made = []
        measures = fingerprint(run)
        for symbol in run.spec.data.symbols:
            name = run.study_name(symbol)

            def create(name: str = name) -> tuple[int, bool]:
                try:
                    return storage.create_new_study([direction], name), True
                except optuna.exceptions.DuplicatedStudyError:
                    return storage.get_study_id_from_name(name), False

            study_id, new = _with_reconnect(create, "create the studies")
            self._ids[(id(storage), name)] = (study_id, maximize)
            attrs: dict[str, Any] = {}
            if new:
                _with_reconnect(functools.partial(storage.set_study_user_attr, study_id, FINGERPRINT_ATTR, measures),
                                "create the studies")
                made.append(name)
            else:  # an existing study must have been made for this spec
                attrs = _with_reconnect(functools.partial(storage.get_study_user_attrs, study_id), "read the studies")
                check(run, name, attrs.get(FINGERPRINT_ATTR))
            # a worker may have made the study first: seeding is keyed on the study's record of it,
            # and enqueueing skips parameters already queued, so a pass repeated after a crash adds none
            if run.spec.tuning.warm_start_from and WARM_START_ATTR not in attrs:
                _with_reconnect(functools.partial(warm_start, run, symbol, storage, study_id),
                                "warm-start the studies")
        return made

    def read_progress(self, run: ResolvedRun, storage: optuna.storages.BaseStorage) -> list[StudyProgress]:
        """Counts and best trial of every symbol's study; a study not created yet reads as empty."""
        def read() -> list[StudyProgress]:
            out = []
            for symbol in run.spec.data.symbols:
                name = run.study_name(symbol)
                try:
                    trials, maximize = self._trials(storage, name)
                except KeyError:
                    out.append(StudyProgress(symbol=symbol, study=name, exists=False))
                    continue
                out.append(summarize(symbol, name, trials, maximize))
            return out

        return _with_reconnect(read, "read the studies")

    def delete_studies(self, run: ResolvedRun, storage: optuna.storages.BaseStorage) -> list[str]:
        deleted = []
        for symbol in run.spec.data.symbols:
            name = run.study_name(symbol)
            try:
                optuna.delete_study(study_name=name, storage=storage)
            except KeyError:
                continue
            self._ids.pop((id(storage), name), None)
            deleted.append(name)
        return deleted

    def _study_id(self, storage: optuna.storages.BaseStorage, name: str) -> tuple[int, bool]:
        key = (id(storage), name)
        if key not in self._ids:
            study_id = storage.get_study_id_from_name(name)
            maximize = storage.get_study_directions(study_id)[0] == optuna.study.StudyDirection.MAXIMIZE
            self._ids[key] = (study_id, maximize)
        return self._ids[key]

    def _trials(self, storage: optuna.storages.BaseStorage, name: str) -> tuple[list[optuna.trial.FrozenTrial], bool]:
        """(trials, maximize) of a study; KeyError when there is no such study."""
        study_id, maximize = self._study_id(storage, name)
        try:
            return storage.get_all_trials(study_id, deepcopy=False), maximize
        except KeyError:  # deleted since its id was cached, maybe made again under the same name
            self._ids.pop((id(storage), name), None)
            study_id, maximize = self._study_id(storage, name)
            return storage.get_all_trials(study_id, deepcopy=False), maximize


def warm_start(run: ResolvedRun, symbol: str, storage: optuna.storages.BaseStorage, study_id: int) -> WarmStartPlan:
    """Enqueue the best trials of the previous run's study of `symbol` (tuning.warmStartFrom) as
    fixed trials of this run's, fitted to its search space (nova.warm_start); the study's
    WARM_START_ATTR says what was seeded and what was clipped or dropped."""
    source_run = run.spec.tuning.warm_start_from
    assert source_run is not None
    source = source_study_name(run.namespace, source_run, symbol)
    name = run.study_name(symbol)
    try:
        source_id = storage.get_study_id_from_name(source)
    except KeyError:
        seeds = WarmStartPlan(notes=[f"no study '{source}' in this storage: nothing to warm-start from"])
    else:
        maximize = storage.get_study_directions(source_id)[0] == optuna.study.StudyDirection.MAXIMIZE
        seeds = plan(storage.get_all_trials(source_id, deepcopy=False), maximize, run.spec.tuning.search_space,
                     run.spec.tuning.warm_start.top_k, run.spec.tuning.trials)
    if seeds.seeds:
        study = optuna.load_study(study_name=name, storage=storage)
        for params in seeds.seeds:
            study.enqueue_trial(params, skip_if_exists=True)
    storage.set_study_user_attr(study_id, WARM_START_ATTR, seeds.record(source))
    log.info("%s: %s", name, seeds.summary(source))
    return seeds


def _with_reconnect[T](action: Callable[[], T], doing: str) -> T:
    """Run a storage action; once more if the server had dropped the pooled connection. A driver
    error leaves as a StorageError saying what was being done."""
    try:
        try:
            return action()
        except sqlalchemy.exc.DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            log.info("database connection was dropped (%s); reconnecting", describe(exc))
            return action()
    except Exception as exc:
        if is_driver_error(exc):
            raise StorageError(f"cannot {doing}: {describe(exc)}") from None
        raise


def empty_progress(run: ResolvedRun) -> list[StudyProgress]:
    """The progress of studies just made: nothing to read back."""
    return [StudyProgress(symbol=s, study=run.study_name(s)) for s in run.spec.data.symbols]


def summarize(symbol: str, name: str, trials: list[optuna.trial.FrozenTrial], maximize: bool) -> StudyProgress:
    return StudyProgress(symbol=symbol, study=name, **count_trials(trials, maximize))
