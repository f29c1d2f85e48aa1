"""What a study's trials measured, as a fingerprint stored on the study and checked whenever a run
opens it. A run deleted and re-created under the same name, but with other data, features, target,
validation, model or metric, would otherwise continue the old study (`<namespace>.<run>.<symbol>`)
and report a best value measured on something else. The operator and the trainer both check it."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from nova.errors import SpecError
from nova.spec import ResolvedRun

FINGERPRINT_ATTR = "nova:measures"  # study user attribute
# the parts of a spec that change what one trial's value means (budgets, workers, sampler do not)
MEASURED = ("data", "features", "target", "validation", "model")


def measured(run: ResolvedRun) -> dict[str, Any]:
    spec = run.spec.model_dump(by_alias=True, mode="json")
    parts = {key: spec[key] for key in MEASURED}
    parts["data"] = {k: v for k, v in parts["data"].items() if k != "symbols"}  # one study per symbol
    parts["metric"] = run.spec.tuning.metric
    parts["direction"] = run.spec.tuning.resolved_direction
    return parts


def fingerprint(run: ResolvedRun) -> str:
    canonical = json.dumps(measured(run), sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()[:32]


class StudyMismatch(SpecError):
    """The study under this run's name holds trials of another spec."""


def check(run: ResolvedRun, study_name: str, stored: str | None) -> None:
    """Raise StudyMismatch when the study was made for another spec; a study without a
    fingerprint (just created by another worker, or by an older Nova) is accepted."""
    if stored is not None and stored != fingerprint(run):
        raise StudyMismatch(
            f"study '{study_name}' already holds trials of a TrainingRun with other data, features, target, "
            f"validation, model or metric (a run of the same name, deleted and re-created with another spec): "
            f"its trials measured something else. Give this run another name, or delete the old study "
            f"(`optuna delete-study --study-name {study_name} --storage <url>`) and re-create the run")
