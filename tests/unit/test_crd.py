"""The committed CRD is exactly what the generator writes, and it is a structural schema.

The API server refuses a non-structural schema outright, and silently prunes status fields that the
schema does not name, so these rules are checked here, without a cluster; the cluster tests in
tests/operator/ check that a real API server accepts the CRD and enforces its rules."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from nova import crd
from nova.schedule import ScheduleStatus
from nova.spec import TrainingRunSpec
from nova.status import RunStatus


def _nodes(schema: dict[str, Any], where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield where, schema
    for name, sub in schema.get("properties", {}).items():
        yield from _nodes(sub, f"{where}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from _nodes(schema["items"], f"{where}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _nodes(schema["additionalProperties"], f"{where}.*")


def _root(kind: str = "TrainingRun") -> dict[str, Any]:
    made = crd.crd() if kind == "TrainingRun" else crd.schedule_crd()
    return made["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


@pytest.mark.parametrize("path, render", [(crd.CRD_PATH, crd.render), (crd.SCHEDULE_CRD_PATH, crd.render_schedule)])
def test_committed_crd_matches_the_generator(path, render):
    committed = path.read_text()
    assert committed == render(), "crds/ is stale: run `python -m nova.crd` and commit the result"


def test_the_generator_writes_every_kind_and_nothing_else_is_in_crds(tmp_path):
    assert crd.main([str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in crd.CRD_DIR.glob("*.yaml"))


@pytest.mark.parametrize("kind", ["TrainingRun", "TrainingSchedule"])
def test_schema_is_structural(kind):
    for where, node in _nodes(_root(kind)):
        untyped_ok = node.get("x-kubernetes-preserve-unknown-fields") or node.get("x-kubernetes-int-or-string")
        assert "type" in node or untyped_ok, f"{where} has no type"
        for keyword in ("$ref", "$defs", "anyOf", "oneOf", "allOf", "not", "patternProperties", "title",
                        "propertyNames", "const", "discriminator"):
            assert keyword not in node, f"{where} still has {keyword}"
        assert not ("properties" in node and "additionalProperties" in node), f"{where}: both kinds of fields"
        assert node.get("additionalProperties", {}) is not False, f"{where}: additionalProperties false"
        assert node.get("default", 0) is not None, f"{where}: default null"
        if node.get("type") == "object" and "properties" not in node and "additionalProperties" not in node \
                and where != ".metadata":  # the API server supplies ObjectMeta's schema
            assert node.get("x-kubernetes-preserve-unknown-fields"), f"{where}: object with no fields"
        for rule in node.get("x-kubernetes-validations", []):
            assert rule["rule"] and rule["message"], f"{where}: a CEL rule without a message"


def test_no_null_left_anywhere():
    text = crd.render() + crd.render_schedule()
    assert "null" not in text and "anyOf" not in text and "$ref" not in text


def _apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Structural defaulting as the API server does it: absent fields with a default get it,
    then defaulting recurses into objects, maps and lists."""
    if isinstance(value, dict) and schema.get("type") == "object":
        value = dict(value)
        for name, sub in schema.get("properties", {}).items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                value[name] = _apply_defaults(sub, value[name])
        if isinstance(schema.get("additionalProperties"), dict):
            value = {k: _apply_defaults(schema["additionalProperties"], v) for k, v in value.items()}
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        value = [_apply_defaults(schema["items"], v) for v in value]
    return value


def test_api_server_defaults_equal_pydantic_defaults():
    """What `kubectl get -o yaml` shows after the API server defaults a minimal spec must be what
    the operator resolves, field for field (numbers compared as numbers)."""
    spec_schema = _root()["properties"]["spec"]
    minimal = {"data": {"symbols": ["AAPL"]}, "tuning": {"storage": {"secretRef": {"name": "db"}}}}
    defaulted = _apply_defaults(spec_schema, minimal)
    expected = TrainingRunSpec.model_validate(minimal).model_dump(by_alias=True, mode="json", exclude_none=True)
    assert TrainingRunSpec.model_validate(defaulted).model_dump(by_alias=True, mode="json",
                                                                exclude_none=True) == expected
    assert defaulted["tuning"]["storage"] == {"secretRef": {"name": "db", "key": "url"}, "keepStudies": True}
    assert defaulted["validation"]["walkForward"]["gap"] == 5
    assert set(defaulted["tuning"]["searchSpace"]) == set(expected["tuning"]["searchSpace"])


def test_cross_field_rules_are_in_the_schema():
    spec = _root()["properties"]["spec"]
    rules = lambda node: {r["rule"] for r in node.get("x-kubernetes-validations", [])}  # noqa: E731
    assert "self.validation.walkForward.gap >= self.target.horizon" in rules(spec)
    assert "self.workers <= self.trials" in rules(spec["properties"]["tuning"])
    assert any("self.start < self.end" in r for r in rules(spec["properties"]["data"]))
    assert spec["properties"]["data"]["properties"]["symbols"]["x-kubernetes-list-type"] == "set"
    space = spec["properties"]["tuning"]["properties"]["searchSpace"]
    assert any(r.startswith("self.all(k, k.matches(") for r in rules(space))
    assert any("'eta'" in r for r in rules(space))
    assert space["additionalProperties"]["x-kubernetes-validations"], "ParamSpace rules lost in inlining"


def test_immutable_fields_have_transition_rules_and_budgets_stay_editable():
    spec = _root()["properties"]["spec"]
    for path in crd.IMMUTABLE:
        node = spec
        for part in path:
            node = node["properties"][part]
        assert {"rule": "self == oldSelf", "message": crd.IMMUTABLE[path]} in node["x-kubernetes-validations"]
    tuning = spec["properties"]["tuning"]["properties"]
    for editable in ("trials", "workers"):
        assert "x-kubernetes-validations" not in tuning[editable]
    assert "x-kubernetes-validations" not in spec["properties"]["suspend"]


def test_constraints_are_carried_over():
    spec = _root()["properties"]["spec"]["properties"]
    trials = spec["tuning"]["properties"]["trials"]
    assert (trials["minimum"], trials["maximum"], trials["type"]) == (1, 100_000, "integer")
    assert spec["data"]["properties"]["source"]["enum"] == ["bundled", "synthetic", "file", "postgres"]
    assert spec["data"]["properties"]["start"] == {"format": "date", "type": "string",
                                                   "description": "First day (inclusive)"}
    step = spec["tuning"]["properties"]["searchSpace"]["additionalProperties"]["properties"]["step"]
    assert step["minimum"] == 0 and step["exclusiveMinimum"] is True
    assert spec["scheduling"]["properties"]["affinity"]["x-kubernetes-preserve-unknown-fields"] is True
    assert spec["scheduling"]["properties"]["tolerations"]["items"]["x-kubernetes-preserve-unknown-fields"]
    assert spec["data"]["properties"]["symbols"]["maxItems"] == 500


def test_status_schema_names_every_field_the_operator_writes():
    status = _root()["properties"]["status"]
    fields = {alias for alias in (f.alias or n for n, f in RunStatus.model_fields.items())}
    assert fields == set(status["properties"])
    conditions = status["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map" and conditions["x-kubernetes-list-map-keys"] == ["type"]


def test_names_subresources_and_columns():
    doc = yaml.safe_load(crd.CRD_PATH.read_text())
    assert doc["metadata"]["name"] == "trainingruns.nova.dev"
    names = doc["spec"]["names"]
    assert names["shortNames"] == ["tr"] and "nova" in names["categories"]
    version = doc["spec"]["versions"][0]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Phase"] == ".status.phase" and columns["Trials"] == ".status.trials"
    assert columns["Best"] == ".status.bestValue" and columns["Age"] == ".metadata.creationTimestamp"
    assert columns["Symbols"] == ".status.symbols"


def _undescribed(node: dict, path: str) -> list[str]:
    missing = []
    for name, sub in (node.get("properties") or {}).items():
        here = f"{path}.{name}"
        if not (sub.get("description") or "").strip():
            missing.append(here)
        missing += _undescribed(sub, here)
    if isinstance(node.get("items"), dict):
        missing += _undescribed(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        missing += _undescribed(node["additionalProperties"], f"{path}.*")
    return missing


def test_every_property_has_a_description_for_kubectl_explain():
    """`kubectl explain trainingrun.spec` showed <no description> for 12 of 14 top-level fields."""
    root = crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    missing = _undescribed(root["properties"]["spec"], "spec") + _undescribed(root["properties"]["status"], "status")
    assert not missing, "add a description (nova/spec.py, nova/status.py) to: " + ", ".join(missing)
    assert _undescribed({"properties": {"x": {"type": "string"}}}, "t") == ["t.x"]  # the walk sees a gap


def test_descriptions_say_what_may_change_on_a_running_run():
    spec = crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    for path in crd.IMMUTABLE:
        assert "Cannot change once the run exists" in crd._at(spec, path)["description"], path
    for path in crd.MUTABLE:
        assert "May change on a running run" in crd._at(spec, path)["description"], path


def test_schedule_names_columns_and_descriptions():
    doc = yaml.safe_load(crd.SCHEDULE_CRD_PATH.read_text())
    assert doc["metadata"]["name"] == "trainingschedules.nova.dev"
    assert doc["spec"]["group"] == "nova.dev" and doc["spec"]["names"]["kind"] == "TrainingSchedule"
    version = doc["spec"]["versions"][0]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Schedule"] == ".spec.schedule" and columns["Suspend"] == ".spec.suspend"
    assert columns["Last Schedule"] == ".status.lastScheduleTime" and columns["Active"] == ".status.activeCount"
    assert columns["Age"] == ".metadata.creationTimestamp"
    root = _root("TrainingSchedule")
    missing = _undescribed(root["properties"]["spec"], "spec") + _undescribed(root["properties"]["status"], "status")
    assert not missing, "add a description (nova/schedule.py) to: " + ", ".join(missing)


def test_schedule_template_keeps_the_run_rules_and_rolls_its_window():
    spec = _root("TrainingSchedule")["properties"]["spec"]
    template = spec["properties"]["runTemplate"]
    rules = {r["rule"] for r in template.get("x-kubernetes-validations", [])}
    assert "self.validation.walkForward.gap >= self.target.horizon" in rules
    data = template["properties"]["data"]["properties"]
    assert data["end"]["pattern"].startswith("^(latest|") and "lookback" in data
    assert "self == oldSelf" not in str(template)  # a template may change: only runs are immutable
    fields = {f.alias or n for n, f in ScheduleStatus.model_fields.items()}
    assert fields == set(_root("TrainingSchedule")["properties"]["status"]["properties"])
