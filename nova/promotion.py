"""Promotion: a schedule's new model replaces the promoted one only when it is better on bars that
neither model trained on. The rule is here, in the contract, as a pure function (`judge`), so the
trainer that scores the models and the tests that check the rule apply one copy of it; the
operator only carries the decision into the schedule's status.

Where the bars come from: each run a schedule creates keeps its newest `gap + window` bars apart
(`data.reserveLastBars`), so no step of it (tuning, holdout, refit) sees them. Its promotion scores
the new model and the incumbent on the newest `window` bars, after `gap` bars past the later of
the two models' training data: out of sample for both, and the same bars for both."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from nova.spec import SpecModel
from nova.status import StatusModel

CURRENT_DIR = "current"
POINTER_FILE = "promoted.json"  # in <output>/<schedule>/current/<symbol>/, beside the copied model
RESULT_VERSION = 1


class PromotionSpec(SpecModel):
    """How a schedule decides whether a new run's model replaces the promoted one."""

    enabled: bool = Field(True, description="Judge each succeeded run's models against the promoted ones "
                          "and keep <output>/<schedule>/current/<symbol>/ pointing at the better")
    window: int = Field(60, ge=10, le=100_000, description="Newest bars both models are scored on; every "
                        "run of the schedule keeps gap + window bars apart (data.reserveLastBars)")
    gap: int = Field(5, ge=0, le=10_000, description="Bars between a model's last training bar and the "
                     "window (>= target.horizon, so no label of a training bar reaches into the window)")
    min_improvement: float = Field(0.0, ge=0.0, le=1e6, description="How much better (in tuning.metric, "
                                   "in its direction) the new model must score than the promoted one; a tie "
                                   "keeps the promoted one")
    require_sharpe: bool = Field(True, description="Also require a net Sharpe on the window no lower than "
                                 "the promoted model's")

    @property
    def reserve(self) -> int:
        """Bars each run keeps apart for the judgement."""
        return self.gap + self.window


@dataclass(frozen=True)
class Scores:
    """One model on the window: the run's metric and the strategy's net Sharpe."""

    metric: float
    sharpe_net: float

    def finite(self) -> bool:
        return math.isfinite(self.metric) and math.isfinite(self.sharpe_net)


@dataclass(frozen=True)
class Verdict:
    promote: bool
    reason: str


def improvement(candidate: float, incumbent: float, maximize: bool) -> float:
    """How much better the candidate is, in the metric's direction (negative: worse)."""
    return candidate - incumbent if maximize else incumbent - candidate


def judge(candidate: Scores, incumbent: Scores | None, metric: str, maximize: bool, spec: PromotionSpec,
          incumbent_problem: str | None = None) -> Verdict:
    """Promote only a candidate better by min_improvement (strictly better when it is 0: a tie keeps
    the incumbent), and, with require_sharpe, with a net Sharpe no lower. An incumbent that cannot
    be scored (`incumbent_problem`: its model is gone, say) gives way to a candidate that can."""
    if not candidate.finite():
        return Verdict(False, f"the new model's scores are not finite ({metric}={candidate.metric}, "
                       f"net Sharpe={candidate.sharpe_net}): kept the promoted model")
    if incumbent is None:
        why = f"the promoted model could not be scored ({incumbent_problem})" if incumbent_problem else \
            "no model promoted yet"
        return Verdict(True, f"{why}: promoted ({metric} {candidate.metric:.4f}, net Sharpe "
                       f"{candidate.sharpe_net:.2f})")
    if not incumbent.finite():
        return Verdict(True, f"the promoted model's scores are not finite ({metric}={incumbent.metric}): promoted")
    gain = improvement(candidate.metric, incumbent.metric, maximize)
    versus = (f"{metric} {candidate.metric:.4f} vs {incumbent.metric:.4f}, net Sharpe "
              f"{candidate.sharpe_net:.2f} vs {incumbent.sharpe_net:.2f}")
    needed = spec.min_improvement
    if gain <= 0.0 or gain < needed:
        word = "not better" if gain <= 0.0 else f"better by {gain:.4f}, less than minImprovement {needed:g}"
        return Verdict(False, f"{metric} {word} ({versus}): kept the promoted model")
    if spec.require_sharpe and candidate.sharpe_net < incumbent.sharpe_net:
        return Verdict(False, f"{metric} better by {gain:.4f} but net Sharpe lower ({versus}): kept the "
                       "promoted model")
    return Verdict(True, f"{metric} better by {gain:.4f} ({versus}): promoted")


def current_dir(output_root: str, schedule: str, symbol: str) -> str:
    """The stable place a serving system reads: `<output>/<schedule>/current/<symbol>`."""
    return f"{output_root.rstrip('/')}/{schedule}/{CURRENT_DIR}/{symbol}"


class ModelScores(StatusModel):
    """A model's scores on the promotion window."""

    metric: float | None = Field(None, description="tuning.metric on the window")
    sharpe_net: float | None = Field(None, description="Net Sharpe of the model's positions on the window")


class PromotedModel(StatusModel):
    """The model a schedule promoted for one symbol: what `current/<symbol>/` holds."""

    run: str = Field(..., description="The TrainingRun that made it")
    model_uri: str = Field(..., description="Where the run wrote it")
    current_uri: str | None = Field(None, description="The stable pointer: <output>/<schedule>/current/<symbol>/")
    metric: str = Field(..., description="The metric it was judged by (the run's tuning.metric)")
    scores: ModelScores = Field(default_factory=ModelScores, description="Its scores when promoted")
    incumbent_scores: ModelScores | None = Field(None, description="The model it replaced, on the same window")
    promoted_at: str = Field(..., description="RFC 3339 time of the promotion")
    reason: str = Field("", max_length=2048, description="Why it was promoted")


class SymbolDecision(StatusModel):
    """One symbol of one judgement, promoted or not, and why."""

    promoted: bool = Field(..., description="Whether the new run's model was promoted")
    reason: str = Field("", max_length=2048, description="Why (both scores, or what kept it from a judgement)")
    candidate: ModelScores = Field(default_factory=ModelScores, description="The new run's model")
    incumbent: ModelScores | None = Field(None, description="The promoted model it was compared with")
    incumbent_run: str | None = Field(None, description="The run that made the promoted model")
    window: str | None = Field(None, description="First and last day of the window, and its bars")


class PromotionRecord(StatusModel):
    """The newest judgement: which run, when, and per symbol what was decided."""

    run: str = Field(..., description="The run whose models were judged")
    phase: str = Field("Evaluating", description="Evaluating, Done or Failed")
    time: str | None = Field(None, description="RFC 3339 time of the decision")
    message: str | None = Field(None, max_length=4096, description="Why it failed, when it did")
    symbols: dict[str, SymbolDecision] = Field(default_factory=dict, description="Per symbol, what was decided")


def result_document(symbols: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What the trainer's `promote` writes (its termination message), read back by the operator."""
    return {"version": RESULT_VERSION, "symbols": symbols}
