"""Loading a run for the trainer: the operator's resolved run.json, or a TrainingRun YAML."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from nova.errors import SpecError
from nova.manifest import load_run
from nova.spec import ResolvedRun, format_validation_error, resolve


def load_resolved(path: str | Path) -> ResolvedRun:
    path = Path(path)
    if path.suffix == ".json":
        try:
            return ResolvedRun.model_validate(json.loads(path.read_text()))
        except OSError as exc:
            raise SpecError(f"cannot read {path}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise SpecError(f"{path} is not valid JSON: {exc}") from None
        except ValidationError as exc:
            raise SpecError(f"{path} is not a valid resolved run:\n{format_validation_error(exc)}") from None
    return resolve(load_run(path))
