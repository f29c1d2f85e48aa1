"""The TrainingRun CustomResourceDefinition, generated from the spec models.

`python -m nova.crd` writes `crds/nova.dev_trainingruns.yaml` (`nova crd` prints it);
`tests/unit/test_crd.py` regenerates it and fails on any difference, so the schema the API server
enforces is always the one the operator and trainer parse with. Pydantic's JSON Schema is turned
into a *structural* OpenAPI v3 schema (what `apiextensions.k8s.io/v1` demands): $refs inlined,
`anyOf[X, null]` collapsed to X (the API server drops nulls of non-nullable fields),
`patternProperties` turned into `additionalProperties` plus a CEL rule on the keys, free-form values
marked `x-kubernetes-preserve-unknown-fields`. Anything the converter does not understand raises,
so a new pydantic construct can never silently weaken the schema.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import PydanticUndefined, to_jsonable_python

from nova.schedule import MAX_SCHEDULE_NAME, SCHEDULE_KIND, SCHEDULE_PLURAL, ScheduleStatus, TrainingScheduleSpec
from nova.spec import API_GROUP, API_VERSION, KIND, PLURAL, TrainingRunSpec
from nova.status import RunStatus

CRD_DIR = Path(__file__).resolve().parent.parent / "crds"
CRD_PATH = CRD_DIR / f"{API_GROUP}_{PLURAL}.yaml"
SCHEDULE_CRD_PATH = CRD_DIR / f"{API_GROUP}_{SCHEDULE_PLURAL}.yaml"
SHORT_NAMES = ["tr"]
CATEGORIES = ["nova", "all-nova"]
MAX_NAME = 50  # children are <name>-workers and <name>-refit; Indexed pods add -<index> to 63

# Fields that cannot change once a run exists: changing them would make the finished trials of the
# study answer a different question. Budgets, parallelism, suspend and scheduling stay editable.
IMMUTABLE: dict[tuple[str, ...], str] = {
    ("data",): "spec.data is immutable: create a new TrainingRun to train on other data",
    ("features",): "spec.features is immutable: it would change what every finished trial measured",
    ("target",): "spec.target is immutable: it would change what every finished trial measured",
    ("validation",): "spec.validation is immutable: it would change what every finished trial measured",
    ("model",): "spec.model is immutable: it would change what every finished trial measured",
    ("tuning", "metric"): "spec.tuning.metric is immutable once the run exists",
    ("tuning", "direction"): "spec.tuning.direction is immutable once the run exists",
    ("tuning", "searchSpace"): "spec.tuning.searchSpace is immutable: the study's trials were sampled from it",
    ("tuning", "storage"): "spec.tuning.storage is immutable: the studies live there",
    # The worker pods' template: a Job's pod template cannot change, and running pods keep theirs.
    # Refused rather than silently ignored; to change them, create a new run (with keepStudies the
    # old studies stay in the storage).
    ("gpu",): "spec.gpu is immutable: the worker pods were created with it; create a new TrainingRun to change it",
    ("resources",): "spec.resources is immutable: the worker pods were created with it; create a new TrainingRun",
    ("scheduling",): "spec.scheduling is immutable: the worker pods were created with it; create a new TrainingRun",
    ("prep",): "spec.prep is immutable: the prep sidecars run with it; create a new TrainingRun to change it",
}
# Optional scalars: a rule on the field itself would not see it added or removed, so the spec says it.
IMMUTABLE_OPTIONAL: dict[str, str] = {
    "image": "spec.image is immutable: the worker pods were created with it; create a new TrainingRun to change it",
    "queueName": "spec.queueName is immutable: the worker Job waits in that queue; create a new TrainingRun "
                 "to use another",
}
# What may change on a running run, and how the change is applied (the README lists the same).
MUTABLE: dict[tuple[str, ...], str] = {
    ("tuning", "trials"): "raised, the workers run more trials; lowered, no new trial starts past it",
    ("tuning", "workers"): "the worker Job's parallelism is patched",
    ("tuning", "timeoutSeconds"): "read by workers started after the edit",
    ("tuning", "sampler"): "read by workers started after the edit",
    ("tuning", "pruner"): "read by workers started after the edit",
    ("suspend",): "the worker Job is suspended or resumed; finished trials are kept (with a queue Nova holds "
                  "the Job's Kueue Workload, and Kueue starts the Job again when it admits it)",
    ("ttlSecondsAfterFinished",): "counted from status.completionTime",
    ("output",): "used by the refit if it has not started yet",
    ("progressDeadlineSeconds",): "applies from the next status pass",
}


_KEEP = {
    "type", "format", "description", "properties", "required", "items", "additionalProperties", "enum",
    "default", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength",
    "pattern", "minItems", "maxItems", "minProperties", "maxProperties", "nullable",
}
_DROP = {"title"}


class _WithFactoryDefaults(GenerateJsonSchema):
    """Also emit the defaults of `default_factory` fields, so the API server fills in nested
    objects (CEL rules such as `self.validation.walkForward.gap` need them present)."""

    def get_default_value(self, schema: Any) -> Any:
        factory = schema.get("default_factory")
        if factory is not None and not schema.get("default_factory_takes_data"):
            return factory()
        return super().get_default_value(schema) if hasattr(super(), "get_default_value") \
            else schema.get("default", PydanticUndefined)


def _strip_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip_none(v) for v in value]
    return value


class _Converter:
    def __init__(self, defs: dict[str, Any]) -> None:
        self.defs = defs

    def convert(self, node: dict[str, Any], where: str) -> dict[str, Any]:
        node = dict(node)
        if "$ref" in node:
            target = self.defs[node.pop("$ref").rsplit("/", 1)[-1]]
            merged = copy.deepcopy(target)
            rules = merged.get("x-kubernetes-validations", []) + node.pop("x-kubernetes-validations", [])
            merged.update(node)
            if rules:
                merged["x-kubernetes-validations"] = rules
            node = merged
        if "anyOf" in node:
            options = [o for o in node.pop("anyOf") if o != {"type": "null"}]
            if node.get("default", 0) is None:
                node.pop("default")
            if len(options) == 1:
                inner = self.convert(options[0], where)
                inner.update({k: v for k, v in node.items() if k not in _DROP})
                node = inner
            else:
                types = {o.get("type") for o in options}
                string_max = [o["maxLength"] for o in options if o.get("type") == "string" and "maxLength" in o]
                if not types <= {"integer", "number", "string", "boolean"} or any(
                        set(o) - ({"type", "maxLength"} if o.get("type") == "string" else {"type"}) for o in options):
                    raise ValueError(f"{where}: cannot express anyOf {options} structurally")
                if types <= {"integer", "string"} or where.endswith("[]"):
                    # CEL cannot see a list whose items have no type (e.g. ParamSpace.choices), so
                    # mixed scalars in a list are int-or-string: quote float and boolean choices
                    node["x-kubernetes-int-or-string"] = True
                    if string_max:
                        node["maxLength"] = string_max[0]
                    if not types <= {"integer", "string"}:
                        node["description"] = (node.get("description", "") +
                                               " (in a cluster, quote floats and booleans: \"0.5\", \"true\")").strip()
                else:
                    node["x-kubernetes-preserve-unknown-fields"] = True
                    node["description"] = (node.get("description", "") + " (" + " or ".join(
                        sorted(types)) + (f"; strings of at most {string_max[0]} characters" if string_max else "")
                        + ")").strip()
                    # no CEL here: the API server cannot type-check an untyped node; a map or list
                    # value is refused by the operator's own validation (phase Failed, InvalidSpec)
        if node.get("default", 0) is None:
            node.pop("default")
        out: dict[str, Any] = {}
        rules = list(node.pop("x-kubernetes-validations", []))
        for key, value in node.items():
            if key in _DROP:
                continue
            if key == "properties":
                out[key] = {name: self.convert(sub, f"{where}.{name}") for name, sub in value.items()}
            elif key == "items":
                out[key] = self.convert(value, f"{where}[]")
            elif key == "additionalProperties":
                if value is False:
                    continue  # unknown fields are pruned (and refused by kubectl's strict field validation)
                if value is True:
                    out["x-kubernetes-preserve-unknown-fields"] = True
                else:
                    out[key] = self.convert(value, f"{where}.*")
            elif key == "patternProperties":
                ((pattern, sub),) = value.items()
                out["additionalProperties"] = self.convert(sub, f"{where}.*")
                # kube-apiserver 1.36 refuses any CEL rule on a map whose values have no type (it
                # cannot build the rule's types: the CRD is not accepted at all); such a map's keys
                # (model.params) are checked by the operator's own validation (InvalidSpec)
                if "type" in out["additionalProperties"]:
                    rules.insert(0, {"rule": f"self.all(k, k.matches('{pattern}'))",
                                     "message": f"{where}: every key must match {pattern}"})
            elif key == "exclusiveMinimum" and not isinstance(value, bool):
                out["minimum"], out["exclusiveMinimum"] = value, True
            elif key == "exclusiveMaximum" and not isinstance(value, bool):
                out["maximum"], out["exclusiveMaximum"] = value, True
            elif key == "default":
                out[key] = _strip_none(value)
            elif key in _KEEP or key.startswith("x-kubernetes-"):
                out[key] = value
            else:
                raise ValueError(f"{where}: no structural equivalent for JSON Schema keyword {key!r}")
        if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
            out["x-kubernetes-preserve-unknown-fields"] = True
        if out.get("type") == "array" and out.get("x-kubernetes-preserve-unknown-fields"):
            out.pop("x-kubernetes-preserve-unknown-fields")  # meaningful on the items, not the list
        if rules:
            out["x-kubernetes-validations"] = rules
        return out


def structural(model: type[BaseModel], where: str) -> dict[str, Any]:
    """A pydantic model's JSON Schema as a structural OpenAPI v3 schema."""
    schema = model.model_json_schema(by_alias=True, schema_generator=_WithFactoryDefaults)
    defs = schema.pop("$defs", {})
    return _Converter(defs).convert(schema, where)


def _at(schema: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    for part in path:
        schema = schema["properties"][part]
    return schema


def spec_schema() -> dict[str, Any]:
    spec = structural(TrainingRunSpec, "spec")
    spec["description"] = "What to train, how to tune it, and where to run it."
    symbols = spec["properties"]["data"]["properties"]["symbols"]
    symbols["x-kubernetes-list-type"] = "set"  # duplicates refused by the API server
    for path, message in IMMUTABLE.items():
        node = _at(spec, path)
        node.setdefault("x-kubernetes-validations", []).append({"rule": "self == oldSelf", "message": message})
        node["description"] = f"{node.get('description', '').rstrip('.')}. Cannot change once the run exists."
    for path, how in MUTABLE.items():
        node = _at(spec, path)
        node["description"] = f"{node.get('description', '').rstrip('.')}. May change on a running run: {how}."
    for field, message in IMMUTABLE_OPTIONAL.items():
        node = _at(spec, (field,))
        node["description"] = f"{node.get('description', '').rstrip('.')}. Cannot change once the run exists."
        spec.setdefault("x-kubernetes-validations", []).append({
            "rule": (f"has(self.{field}) == has(oldSelf.{field}) && "
                     f"(!has(self.{field}) || self.{field} == oldSelf.{field})"),
            "message": message})
    return spec


def status_schema() -> dict[str, Any]:
    status = structural(RunStatus, "status")
    status["description"] = "Written by the operator: phase, conditions, study progress, best, model."
    return _conditions_keyed_by_type(status)


def _conditions_keyed_by_type(status: dict[str, Any]) -> dict[str, Any]:
    """Conditions as a map list keyed by type, as kubectl and server-side apply expect."""
    conditions = status["properties"]["conditions"]
    conditions["x-kubernetes-list-type"] = "map"
    conditions["x-kubernetes-list-map-keys"] = ["type"]
    return status


def _name_rules(max_name: int, why: str) -> list[dict[str, str]]:
    return [
        {"rule": f"size(self.metadata.name) <= {max_name}",
         "message": f"metadata.name must be at most {max_name} characters ({why})"},
        {"rule": "self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",
         "message": "metadata.name must be a DNS label (lowercase letters, digits and '-', no dots)"},
    ]


def _definition(kind: str, plural: str, short_names: list[str], description: str, spec: dict[str, Any],
                status: dict[str, Any], rules: list[dict[str, str]],
                columns: list[dict[str, Any]]) -> dict[str, Any]:
    """One kind's CustomResourceDefinition: the same group, version, categories and status subresource."""
    root = {
        "type": "object",
        "description": description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
        "x-kubernetes-validations": rules,
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{API_GROUP}"},
        "spec": {
            "group": API_GROUP,
            "names": {"kind": kind, "listKind": f"{kind}List", "plural": plural,
                      "singular": kind.lower(), "shortNames": short_names, "categories": CATEGORIES},
            "scope": "Namespaced",
            "versions": [{
                "name": API_VERSION,
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": root},
                "subresources": {"status": {}},
                "additionalPrinterColumns": columns,
            }],
        },
    }


def crd() -> dict[str, Any]:
    columns: list[dict[str, Any]] = [
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Symbols", "type": "integer", "jsonPath": ".status.symbols"},
        {"name": "Trials", "type": "string", "jsonPath": ".status.trials",
         "description": "Finished trials / budget, over every symbol"},
        {"name": "Best", "type": "number", "jsonPath": ".status.bestValue",
         "description": "Best value of the tuning metric over every symbol"},
        {"name": "Metric", "type": "string", "jsonPath": ".spec.tuning.metric", "priority": 1},
        {"name": "Workers", "type": "integer", "jsonPath": ".spec.tuning.workers", "priority": 1},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    return _definition(
        KIND, PLURAL, SHORT_NAMES, "One training run: tune XGBoost on market data with Optuna across worker "
        "pods, then refit the best parameters.", spec_schema(), status_schema(),
        _name_rules(MAX_NAME, "the run's Jobs are named <name>-workers and <name>-refit"), columns)


def schedule_spec_schema() -> dict[str, Any]:
    spec = structural(TrainingScheduleSpec, "spec")
    spec["description"] = "When to train (cron in a time zone), how runs overlap and are kept, and each run's spec."
    symbols = spec["properties"]["runTemplate"]["properties"]["data"]["properties"]["symbols"]
    symbols["x-kubernetes-list-type"] = "set"
    return spec


def schedule_status_schema() -> dict[str, Any]:
    status = structural(ScheduleStatus, "status")
    status["description"] = "Written by the operator: the last tick, active runs, skipped ticks."
    return _conditions_keyed_by_type(status)


def schedule_crd() -> dict[str, Any]:
    columns: list[dict[str, Any]] = [
        {"name": "Schedule", "type": "string", "jsonPath": ".spec.schedule"},
        {"name": "Suspend", "type": "boolean", "jsonPath": ".spec.suspend"},
        {"name": "Last Schedule", "type": "date", "jsonPath": ".status.lastScheduleTime"},
        {"name": "Active", "type": "integer", "jsonPath": ".status.activeCount"},
        {"name": "Time Zone", "type": "string", "jsonPath": ".spec.timeZone", "priority": 1},
        {"name": "Last Run", "type": "string", "jsonPath": ".status.lastRun", "priority": 1},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    return _definition(
        SCHEDULE_KIND, SCHEDULE_PLURAL, ["ts"], "Retraining on a schedule: a TrainingRun per cron tick, on the "
        "newest data window, warm-started from the last successful run.", schedule_spec_schema(),
        schedule_status_schema(),
        _name_rules(MAX_SCHEDULE_NAME, "its runs are named <name>-<yyyymmddhhmm>, at most 50"), columns)


def render() -> str:
    header = "# Generated by `python -m nova.crd` from nova/spec.py and nova/status.py: do not edit.\n"
    return header + yaml.safe_dump(to_jsonable_python(crd()), sort_keys=False, width=100)


def render_schedule() -> str:
    header = "# Generated by `python -m nova.crd` from nova/schedule.py: do not edit.\n"
    return header + yaml.safe_dump(to_jsonable_python(schedule_crd()), sort_keys=False, width=100)


RENDERERS = {CRD_PATH.name: render, SCHEDULE_CRD_PATH.name: render_schedule}


def main(argv: list[str] | None = None) -> int:
    """`python -m nova.crd` rewrites every kind's committed CRD in crds/ (or the folder given);
    `-` prints the TrainingRun CRD instead (as `nova crd` does)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m nova.crd", description="Generate the CRDs (TrainingRun, "
                                     "TrainingSchedule) from nova/spec.py, nova/status.py and nova/schedule.py.")
    parser.add_argument("folder", nargs="?", default=str(CRD_DIR), help="where to write them (default: crds/); "
                        "'-' prints the TrainingRun CRD to stdout")
    args = parser.parse_args(argv)
    if args.folder == "-":
        sys.stdout.write(render())
        return 0
    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, make in RENDERERS.items():
        (folder / name).write_text(make())
        print(f"wrote {folder / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
