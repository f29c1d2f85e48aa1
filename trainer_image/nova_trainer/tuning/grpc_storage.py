"""Optuna's gRPC storage proxy client, with the heartbeats that it lacks.

`optuna.storages.GrpcStorageProxy` (optuna 5.0) is not a `BaseHeartbeat`, so through it Optuna would
record no heartbeats and a trial whose worker died would stay RUNNING forever. Here the heartbeat is
a trial system attribute that the running worker bumps every `heartbeat_seconds`; another worker
calls a trial stale when it has seen that attribute unchanged for `grace_seconds` (silence.py).
Failing the trial and its retry then go through Optuna's own `fail_stale_trials` and
`RetryHeartbeatStaleTrialCallback`, exactly as on RDBStorage."""

from __future__ import annotations

import itertools
import logging
import os
import socket
import time
from collections.abc import Callable

import grpc
import optuna
from optuna.storages import GrpcStorageProxy
from optuna.trial import FrozenTrial, TrialState

from nova_trainer.tuning.optuna_private import BaseHeartbeat, trial_storage_id
from nova_trainer.tuning.silence import SilenceWatch

log = logging.getLogger(__name__)
HEARTBEAT_ATTR = "nova:heartbeat"


class GrpcHeartbeatStorage(GrpcStorageProxy, BaseHeartbeat):
    def __init__(self, host: str, port: int, heartbeat_seconds: int, grace_seconds: int,
                 stale_callback: Callable[[optuna.Study, FrozenTrial], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(host=host, port=port)
        self._interval, self._stale_callback = heartbeat_seconds, stale_callback
        self._silence = SilenceWatch(grace_seconds, clock)
        self._me = f"{socket.gethostname()}/{os.getpid()}"
        self._beats = itertools.count()

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, f"{self._me}/{next(self._beats)}")
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # finished (or failed as stale) in the meantime: nothing to keep alive
        except grpc.RpcError as exc:  # the proxy restarting: keep the heartbeat thread alive
            log.warning("heartbeat of trial %d not recorded: %s", trial_id, exc.code())

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        running = self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
        return self._silence.stale(study_id, {trial_storage_id(t): t.system_attrs.get(HEARTBEAT_ATTR) for t in running})

    def get_heartbeat_interval(self) -> int | None:
        return self._interval

    def get_heartbeat_stale_trial_callback(self) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        return self._stale_callback
