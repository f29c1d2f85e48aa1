"""Hostile TrainingRuns (tests/reliability/data/hostile_runs.py), one list over both enforcers:
the spec models (what `nova run` and the trainer use) and the real kube-apiserver through the
generated CRD (what `kubectl apply` meets). Every case must be refused, and the refusal must name
the field. A case accepted by either enforcer, or refused without naming the field, fails."""

from __future__ import annotations

import json
import uuid

import pytest

from nova.errors import SpecError
from nova.manifest import parse_run
from tests.reliability.data.hostile_runs import CASES, base

pytestmark = pytest.mark.reliability
GROUP, VERSION, PLURAL = "nova.dev", "v1alpha1", "trainingruns"


def test_the_list_is_big_enough():
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)


def _models_param(case):
    marks = [pytest.mark.xfail(strict=True, reason=case.models_gap)] if case.models_gap else []
    return pytest.param(case, id=case.id, marks=marks)


@pytest.mark.parametrize("case", [_models_param(c) for c in CASES])
def test_spec_models_refuse_naming_the_field(case):
    with pytest.raises(SpecError) as err:
        parse_run(case.manifest(), "hostile.yaml")
    message = str(err.value)
    assert case.field in message, message[:2000]
    assert len(message) < 5000, "the message echoes the hostile input at length"


def test_the_base_manifest_is_accepted():
    """Otherwise every refusal above could be for the wrong reason."""
    parse_run(base())


@pytest.fixture(scope="module")
def hostile_ns(control_plane, crd_api):
    """One namespace for every dry-run case (creating one per case costs more than the cases)."""
    name = f"hostile-{uuid.uuid4().hex[:6]}"
    control_plane.kubectl("create", "namespace", name)
    yield name
    from kubernetes import client as k8s

    stored = k8s.CustomObjectsApi(crd_api).list_namespaced_custom_object(GROUP, VERSION, name, PLURAL)
    control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)
    assert stored["items"] == [], "a dry run stored something"


def _create(api, namespace: str, body: dict):
    from kubernetes import client as k8s

    return k8s.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body, dry_run="All", field_validation="Strict")


@pytest.mark.cluster
def test_api_server_accepts_the_base_manifest(crd_api, hostile_ns):
    _create(crd_api, hostile_ns, base())


def _api_param(case):
    marks = [pytest.mark.xfail(strict=True, reason=case.api_gap)] if case.api_gap else []
    return pytest.param(case, id=case.id, marks=marks)


@pytest.mark.cluster
@pytest.mark.parametrize("case", [_api_param(c) for c in CASES])
def test_api_server_refuses_naming_the_field(crd_api, hostile_ns, case):
    from kubernetes.client.exceptions import ApiException

    with pytest.raises(ApiException) as err:
        _create(crd_api, hostile_ns, case.manifest())
    assert err.value.status in (400, 422), err.value.body[:2000]
    message = json.loads(err.value.body).get("message", "")
    assert case.field in message, message[:2000]
