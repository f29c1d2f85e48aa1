"""Optuna's RDBStorage, plus the one dead worker it cannot see: one that died before its trial's
first heartbeat.

Optuna records a trial (RUNNING) and only then starts the heartbeat thread, whose first beat is the
trial's first row in `trial_heartbeats`. A worker killed in between, or whose first beat a database
restart lost, leaves a RUNNING trial with no heartbeat row, and `RDBStorage._get_stale_trial_ids`
skips such trials: every other worker would wait on it forever (seen in CI:
tests/integration/test_distributed_tuning.py). A live worker writes that row within one heartbeat
interval, so a trial still without one after `grace_seconds` of this process's watch is stale too."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from optuna.storages import RDBStorage
from optuna.trial import TrialState

from nova_trainer.tuning.optuna_private import rdb_models as models
from nova_trainer.tuning.optuna_private import scoped_session
from nova_trainer.tuning.silence import SilenceWatch


class HeartbeatRDBStorage(RDBStorage):
    def __init__(self, url: str, *, grace_period: int, clock: Callable[[], float] = time.monotonic,
                 **kwargs: Any) -> None:
        super().__init__(url, grace_period=grace_period, **kwargs)
        self._silence = SilenceWatch(grace_period, clock)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        stale = super()._get_stale_trial_ids(study_id)
        with scoped_session(self.scoped_session) as session:
            never_beat = (session.query(models.TrialModel.trial_id)
                          .outerjoin(models.TrialHeartbeatModel)
                          .filter(models.TrialModel.study_id == study_id,
                                  models.TrialModel.state == TrialState.RUNNING,
                                  models.TrialHeartbeatModel.trial_heartbeat_id.is_(None))
                          .all())
        return stale + self._silence.stale(study_id, {trial_id: None for (trial_id,) in never_beat})
