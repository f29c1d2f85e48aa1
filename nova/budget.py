"""The trial budget rule, one copy for the operator (status, when to refit) and the trainer (when a
worker stops starting trials).

A trial counts once it is COMPLETE, PRUNED, FAIL (unless a retry replaced it), RUNNING or WAITING
(queued retries). A worker starts a trial only while that count is below the budget, so at most
`workers - 1` trials overshoot (when several workers check at the same instant).

Trials are Optuna's FrozenTrials, read by duck typing (`state.name`, `number`, `system_attrs`), so
the contract needs no Optuna import."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

# Optuna's RetryHeartbeatStaleTrialCallback records, on the retry, the numbers of the trials it replaces
RETRY_HISTORY_ATTR = "retry_history"


class TrialLike(Protocol):
    number: int
    state: Any  # optuna.trial.TrialState
    value: float | None
    params: dict[str, Any]
    system_attrs: dict[str, Any]


def retried_numbers(trials: Iterable[TrialLike]) -> set[int]:
    """Numbers of the FAIL trials that a queued retry replaced: they do not count against the budget."""
    return {n for t in trials for n in t.system_attrs.get(RETRY_HISTORY_ATTR, [])}


@dataclass(frozen=True, kw_only=True)
class TrialCounts:
    complete: int = 0
    pruned: int = 0
    failed: int = 0  # failures that count: not replaced by a retry
    running: int = 0
    waiting: int = 0
    best_value: float | None = None
    best_params: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> int:
        return self.complete + self.pruned + self.failed

    @property
    def committed(self) -> int:
        """What the budget is compared with before a worker starts a trial."""
        return self.finished + self.running + self.waiting

    def done(self, budget: int) -> bool:
        """The study holds its budget and nothing is still running or queued."""
        return self.finished >= budget and self.running == 0 and self.waiting == 0


def count_trials(trials: Sequence[TrialLike], maximize: bool) -> dict[str, Any]:
    """The fields of a TrialCounts for these trials (a dict, so subclasses add their own fields)."""
    retried = retried_numbers(trials)
    counts = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0, "RUNNING": 0, "WAITING": 0}
    best: TrialLike | None = None
    for t in trials:
        state = t.state.name
        if state == "FAIL":
            if t.number not in retried:
                counts["FAIL"] += 1
            continue
        counts[state] = counts.get(state, 0) + 1
        if state == "COMPLETE" and t.value is not None and (
                best is None or best.value is None or (t.value > best.value if maximize else t.value < best.value)):
            best = t
    return {"complete": counts["COMPLETE"], "pruned": counts["PRUNED"], "failed": counts["FAIL"],
            "running": counts["RUNNING"], "waiting": counts["WAITING"],
            "best_value": best.value if best else None, "best_params": dict(best.params) if best else {}}


def trial_counts(trials: Sequence[TrialLike], maximize: bool) -> TrialCounts:
    return TrialCounts(**count_trials(trials, maximize))
