"""The warm-start rule: which of a previous run's trials seed a new study, and how their parameters
are fitted to the new search space. One copy, for the operator (when it creates a run's studies) and
the local runner (`nova run --warm-start-from`).

A seed is enqueued as an Optuna fixed trial, so workers evaluate it before the sampler proposes its
own. Optuna warns about, but still uses, a fixed value outside its distribution; the new run would
then report a trial outside its own search space. So numeric values are clipped into the new range
(and onto its step grid), categorical values not among the new choices are dropped (the sampler
picks them), and parameters the new space does not tune are dropped; each change is noted.

Trials are read by duck typing (`state.name`, `value`, `params`, `number`), so the contract needs no
Optuna import."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from nova.budget import TrialLike
from nova.spec import ParamSpace

WARM_START_ATTR = "nova:warmStart"  # study user attribute: where the seeds came from, what was changed
MAX_NOTES = 100  # kept in the attribute; the rest counted


def source_study_name(namespace: str, run_name: str, symbol: str) -> str:
    """The previous run's study of this symbol (the same naming as ResolvedRun.study_name)."""
    return f"{namespace}.{run_name}.{symbol}"


@dataclass(frozen=True)
class WarmStartPlan:
    """The parameters to enqueue (best first) and one note per parameter that was clipped or dropped."""

    seeds: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    source_trials: list[int] = field(default_factory=list)

    def record(self, source: str) -> dict[str, Any]:
        """The study user attribute that says what was seeded (JSON-serialisable)."""
        notes = self.notes[:MAX_NOTES] + ([f"... and {len(self.notes) - MAX_NOTES} more"]
                                          if len(self.notes) > MAX_NOTES else [])
        return {"from": source, "enqueued": len(self.seeds), "sourceTrials": self.source_trials, "notes": notes}

    def summary(self, source: str) -> str:
        """One log line: how many, from where, and the first few changes."""
        more = f" (and {len(self.notes) - 3} more, in study attribute {WARM_START_ATTR})" if len(self.notes) > 3 else ""
        return (f"warm start from {source}: {len(self.seeds)} trial(s) enqueued"
                + ("; " + "; ".join(self.notes[:3]) + more if self.notes else ""))


def fit(params: dict[str, Any], space: dict[str, ParamSpace]) -> tuple[dict[str, Any], list[str]]:
    """One trial's parameters fitted to `space`; the notes say what changed and why."""
    out: dict[str, Any] = {}
    notes: list[str] = []
    for name, value in params.items():
        p = space.get(name)
        if p is None:
            notes.append(f"{name}={value!r} dropped: not in the new search space")
            continue
        if p.type == "categorical":
            assert p.choices is not None  # ParamSpace's validator
            if any(c == value and isinstance(c, bool) == isinstance(value, bool) for c in p.choices):
                out[name] = value
            else:
                notes.append(f"{name}={value!r} dropped: not among the new choices {p.choices}")
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            notes.append(f"{name}={value!r} dropped: not a number, the new space has a {p.type} range")
            continue
        fitted = _clip(float(value), p)
        if fitted != value:
            notes.append(f"{name}={value!r} clipped to {fitted!r} (new range [{p.low}, {p.high}]"
                         + (f", step {p.step}" if p.step and not p.log else "") + ")")
        out[name] = fitted
    return out, notes


def _clip(value: float, p: ParamSpace) -> float | int:
    assert p.low is not None and p.high is not None  # ParamSpace's validator
    low, high = p.low, p.high
    step = (p.step or (1 if p.type == "int" else None)) if not p.log or p.type == "int" else None
    if p.type == "int":
        low, high, step = math.ceil(low), math.floor(high), int(step or 1)
    v = min(max(value, low), high)
    if step:  # onto the grid low + k*step that Optuna samples from, inside [low, high]
        k = round((v - low) / step)
        v = low + k * step
        if v > high:
            v -= step
    return int(round(v)) if p.type == "int" else float(v)


def plan(trials: Sequence[TrialLike], maximize: bool, space: dict[str, ParamSpace], top_k: int,
         budget: int) -> WarmStartPlan:
    """The best `top_k` COMPLETE trials (never more than the new budget: an enqueued trial counts
    against it, and one the workers could never start would keep the study from finishing), fitted
    to the new space. Two trials that become identical after fitting are enqueued once."""
    done = [t for t in trials if t.state.name == "COMPLETE" and t.value is not None and math.isfinite(t.value)]
    done.sort(key=lambda t: (-t.value if maximize else t.value, t.number))  # type: ignore[operator]  # value is not None: filtered above
    seeds: list[dict[str, Any]] = []
    notes: list[str] = []
    numbers: list[int] = []
    for t in done:
        if len(seeds) >= min(top_k, budget):
            break
        fitted, why = fit(dict(t.params), space)
        notes += [f"trial {t.number}: {n}" for n in why]
        if fitted and fitted not in seeds:
            seeds.append(fitted)
            numbers.append(t.number)
    return WarmStartPlan(seeds=seeds, notes=notes, source_trials=numbers)
