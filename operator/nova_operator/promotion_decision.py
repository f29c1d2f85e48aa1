"""What a schedule's pass decides about promotion, as a pure function of the schedule, its runs and
what the newest run's promote Job reported: the Job to create, the `promoted` and `lastPromotion`
status fields, and the Events. The models are scored in the trainer image (`nova-trainer promote`,
by the rule in nova.promotion); the operator only starts that Job and carries its decision.

Once per run: the newest Succeeded run is judged when `lastPromotion` names another run; the Job's
name comes from the run (`<run>-promote`, create-or-get), so a restarted operator gets the Job it
made, and a decision already in the status is never applied twice."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from nova.promotion import ModelScores, PromotedModel, PromotionRecord, SymbolDecision, current_dir
from nova.schedule import TrainingScheduleSpec
from nova.spec import API_GROUP, API_VERSION, KIND, ResolvedRun, TrainingRunSpec
from nova_operator import builders


@dataclass
class PromoteJob:
    """What the pass saw of a run's promote Job: Active, Succeeded (with its result) or Failed."""

    state: str
    result: str | None = None
    message: str | None = None


@dataclass
class PromotionPlan:
    status: dict[str, Any]  # promoted, lastPromotion: always both, carried when unchanged
    create: list[dict[str, Any]] = field(default_factory=list)
    events: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def evaluating(self) -> str | None:
        """The run being judged (kept from history-limit deletion until its decision is in)."""
        last = self.status.get("lastPromotion") or {}
        return last.get("run") if last.get("phase") == "Evaluating" else None


def pending(schedule: dict[str, Any], spec: TrainingScheduleSpec, succeeded: list[dict[str, Any]]) -> str | None:
    """The newest Succeeded run when its promote Job must be looked at (not judged yet), else None."""
    if not spec.promotion.enabled or not succeeded:
        return None
    last = (schedule.get("status") or {}).get("lastPromotion") or {}
    name = succeeded[0]["metadata"]["name"]
    return None if last.get("run") == name and last.get("phase") in ("Done", "Failed") else name


def _ts(now: dt.datetime) -> str:
    return now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _dump(model: Any) -> dict[str, Any]:
    """Every field, None included: the status is merge-patched, where a null removes what an
    earlier decision wrote (a Failed record's message, a symbol no longer judged)."""
    return model.model_dump(by_alias=True)


def _record(record: PromotionRecord, last: dict[str, Any] | None) -> dict[str, Any]:
    out = _dump(record)
    out["symbols"] = {**{s: None for s in ((last or {}).get("symbols") or {})}, **out["symbols"]}
    return out


def _owner(run: dict[str, Any]) -> dict[str, Any]:
    md = run["metadata"]
    return {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": KIND, "name": md["name"], "uid": md["uid"],
            "controller": True, "blockOwnerDeletion": True}


def request(schedule: str, spec: TrainingScheduleSpec, root: str, candidate: str,
            promoted: dict[str, Any]) -> dict[str, Any]:
    """What `nova-trainer promote` is asked: where the new and the promoted models are."""
    return {"schedule": schedule, "outputRoot": root, "candidateDir": f"{root}/{candidate}",
            "incumbents": {sym: {"run": p["run"], "dir": f"{root}/{p['run']}"} for sym, p in promoted.items()},
            "promotion": spec.promotion.model_dump(by_alias=True, mode="json")}


def _scores(raw: dict[str, Any] | None) -> ModelScores | None:
    return None if not raw else ModelScores(metric=raw.get("metric"), sharpe_net=raw.get("sharpeNet"))


def model_uris(run: dict[str, Any]) -> dict[str, str]:
    """Each symbol's model as the run's own status.model says (the refit's layout, told once)."""
    model = (run.get("status") or {}).get("model") or {}
    base = str(model.get("uri") or "").rstrip("/")
    return {m["symbol"]: f"{base}/{m['file']}" for m in model.get("symbols") or [] if m.get("file") and base}


def apply_result(run: str, metric: str, root: str, schedule: str, result: dict[str, Any],
                 promoted: dict[str, Any], now: str, uris: dict[str, str] | None = None
                 ) -> tuple[dict[str, Any], PromotionRecord, list[tuple[str, str, str]]]:
    """The trainer's decision per symbol into the status: the new `promoted`, the record, Events.
    Paths come from the operator's side (the run's status.model, nova.promotion.current_dir), not
    from the pod, which may see its volumes elsewhere."""
    promoted = dict(promoted)
    record = PromotionRecord(run=run, phase="Done", time=now)
    events: list[tuple[str, str, str]] = []
    for symbol, d in (result.get("symbols") or {}).items():
        decision = SymbolDecision(promoted=bool(d.get("promoted")), reason=str(d.get("reason") or "")[:2048],
                                  candidate=_scores(d.get("candidate")) or ModelScores(),
                                  incumbent=_scores(d.get("incumbent")), incumbent_run=d.get("incumbentRun"),
                                  window=d.get("window"))
        record.symbols[symbol] = decision
        if decision.promoted:
            promoted[symbol] = _dump(PromotedModel(
                run=run, model_uri=(uris or {}).get(symbol) or f"{root}/{run}",
                current_uri=current_dir(root, schedule, symbol) + "/", metric=metric,
                scores=decision.candidate, incumbent_scores=decision.incumbent, promoted_at=now,
                reason=decision.reason))
            events.append(("Normal", "Promoted", f"{symbol}: {run} promoted: {decision.reason}"))
        else:
            events.append(("Normal", "NotPromoted", f"{symbol}: {run} not promoted: {decision.reason}"))
    return promoted, record, events


def decide(schedule: dict[str, Any], spec: TrainingScheduleSpec, succeeded: list[dict[str, Any]],
           job: PromoteJob | None, cfg: builders.OperatorConfig, now: dt.datetime) -> PromotionPlan:
    """`succeeded`: the schedule's Succeeded runs, newest first; `job`: the newest one's promote Job."""
    old = schedule.get("status") or {}
    promoted: dict[str, Any] = dict(old.get("promoted") or {})
    last: dict[str, Any] | None = old.get("lastPromotion")
    carry = PromotionPlan(status={"promoted": promoted, "lastPromotion": last})
    if pending(schedule, spec, succeeded) is None:
        return carry  # off, nothing succeeded yet, or judged already
    newest = succeeded[0]
    name = newest["metadata"]["name"]
    md = schedule["metadata"]
    try:
        run_spec = TrainingRunSpec.model_validate(newest.get("spec") or {})
    except ValidationError as exc:
        return _failed(carry, name, f"the run's spec no longer parses: {exc.errors()[0]['msg']}", now)
    run = ResolvedRun(name=name, namespace=md["namespace"], generation=newest["metadata"].get("generation", 1),
                      spec=run_spec)
    root = builders.promotion_root(run, cfg)
    if root is None:
        why = ("the run writes to its own output.uri" if run_spec.output.uri else "the operator has no output "
               "claim (NOVA_OUTPUT_CLAIM; the chart's models PVC), so each run's models go with its refit pod")
        return _failed(carry, name, f"promotion needs every run's models in one place: {why}", now)
    if job is None:
        manifest = builders.promote_job(run, _owner(newest), cfg, request(md["name"], spec, root, name, promoted))
        record = PromotionRecord(run=name, phase="Evaluating")
        return PromotionPlan(status={"promoted": promoted, "lastPromotion": _record(record, last)}, create=[manifest])
    if job.state == "Failed":
        return _failed(carry, name, f"the promote Job failed: {job.message or 'see its pod log'}", now)
    if job.state != "Succeeded":
        if last and last.get("run") == name:
            return carry  # Evaluating already says so
        return PromotionPlan(status={"promoted": promoted, "lastPromotion": _record(PromotionRecord(
            run=name, phase="Evaluating"), last)})
    try:
        result = json.loads(job.result or "")
        if not isinstance(result, dict) or not isinstance(result.get("symbols"), dict):
            raise ValueError("no symbols")
    except ValueError:
        return _failed(carry, name, f"the promote Job left no readable decision ({(job.result or '')[:200]!r})", now)
    new_promoted, record, events = apply_result(name, run_spec.tuning.metric, root, md["name"], result, promoted,
                                                _ts(now), model_uris(newest))
    return PromotionPlan(status={"promoted": new_promoted, "lastPromotion": _record(record, last)}, events=events)


def _failed(carry: PromotionPlan, run: str, message: str, now: dt.datetime) -> PromotionPlan:
    """No judgement for this run: the promoted models stay, the record says why (one Event)."""
    record = PromotionRecord(run=run, phase="Failed", time=_ts(now), message=message[:4096])
    return PromotionPlan(status={**carry.status, "lastPromotion": _record(record, carry.status["lastPromotion"])},
                         events=[("Warning", "PromotionFailed", f"{run}: {message}")])
