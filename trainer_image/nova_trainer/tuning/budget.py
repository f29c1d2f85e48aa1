"""The trial budget, counted in the storage across every worker.

A trial counts once it is COMPLETE, PRUNED, FAIL (unless a retry replaced it), RUNNING or WAITING
(queued retries). A worker starts a trial only while that count is below the budget, so at most
`workers - 1` trials overshoot (when several workers check at the same instant)."""

from __future__ import annotations

from dataclasses import dataclass

import optuna
from optuna.trial import TrialState


@dataclass(frozen=True)
class Progress:
    complete: int
    pruned: int
    failed: int  # failures that count: not replaced by a retry
    running: int
    waiting: int
    best_value: float | None
    best_params: dict

    @property
    def finished(self) -> int:
        return self.complete + self.pruned + self.failed

    @property
    def committed(self) -> int:
        return self.finished + self.running + self.waiting


def progress(study: optuna.Study) -> Progress:
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    count = {s: 0 for s in TrialState}
    failed = 0
    for t in trials:
        count[t.state] += 1
        if t.state == TrialState.FAIL and t.number not in retried:
            failed += 1
    best_value, best_params = None, {}
    if count[TrialState.COMPLETE]:
        best = study.best_trial
        best_value, best_params = best.value, best.params
    return Progress(count[TrialState.COMPLETE], count[TrialState.PRUNED], failed,
                    count[TrialState.RUNNING], count[TrialState.WAITING], best_value, best_params)
