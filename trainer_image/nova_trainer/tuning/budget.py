"""The trial budget as a worker reads it from its study; the counting rule itself is the
contract's (`nova.budget`), shared with the operator's status."""

from __future__ import annotations

import optuna

from nova.budget import TrialCounts, trial_counts

Progress = TrialCounts


def progress(study: optuna.Study) -> Progress:
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    return trial_counts(study.get_trials(deepcopy=False), maximize)
