"""Reading TrainingRun manifests from YAML, with errors that name the field."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from nova.errors import SpecError
from nova.spec import TrainingRun, format_validation_error


def parse_run(document: dict, source: str = "manifest") -> TrainingRun:
    if not isinstance(document, dict):
        raise SpecError(f"{source}: expected a TrainingRun mapping, got {type(document).__name__}")
    try:
        return TrainingRun.model_validate(document)
    except ValidationError as exc:
        raise SpecError(f"{source} is not a valid TrainingRun:\n{format_validation_error(exc)}") from None


def load_run(path: str | Path) -> TrainingRun:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(f"cannot read {path}: {exc.strerror}") from None
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise SpecError(f"{path} is not valid YAML: {exc}") from None
    runs = [d for d in docs if isinstance(d, dict) and d.get("kind") == "TrainingRun"]
    if len(runs) != 1:
        raise SpecError(f"{path} must hold exactly one TrainingRun (found {len(runs)})")
    return parse_run(runs[0], str(path))
