"""The CRD on a real API server: bad TrainingRuns are refused with messages that name the field,
good ones are defaulted exactly as the operator would resolve them, and started runs keep the
fields that their finished trials depend on."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from nova.spec import TrainingRunSpec

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parents[2]
GROUP, VERSION, PLURAL = "nova.dev", "v1alpha1", "trainingruns"


def manifest(name: str = "r", **spec) -> dict:
    base = {"data": {"symbols": ["AAPL"]}}
    for key, value in spec.items():
        base[key] = value
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainingRun", "metadata": {"name": name}, "spec": base}


def create(api: k8s.ApiClient, namespace: str, body: dict, dry_run: bool = True) -> dict:
    return k8s.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body, dry_run="All" if dry_run else None, field_validation="Strict")


BAD = [
    ({"data": {"symbols": ["AAPL"], "source": "file", "uri": "s3://b/x", "claimName": "bars"}},
     "data.claimName needs data.source 'file' and a uri relative to the volume"),
    ({"data": {"symbols": ["AAPL"], "claimName": "bars"}}, "data.claimName needs data.source 'file'"),
    ({"output": {"objectStore": {"endpoint": "minio:9000"}}}, "spec.output.objectStore.endpoint"),
    ({"validation": {"walkForward": {"gap": 0}}, "target": {"horizon": 3}}, "gap must be >= target.horizon"),
    ({"data": {"symbols": ["AAPL"], "start": "2010-01-01", "end": "2009-01-01"}}, "data.start must be before data.end"),
    ({"data": {"symbols": []}}, "spec.data.symbols"),
    ({"data": {"symbols": ["../../etc/passwd"]}}, "spec.data.symbols[0]"),
    ({"data": {"symbols": ["AAPL", "AAPL"]}}, "Duplicate value"),
    ({"tuning": {"trials": 2, "workers": 3}}, "tuning.workers must not exceed tuning.trials"),
    ({"tuning": {"searchSpace": {"eta": {"type": "float", "low": 0.3, "high": 0.1}}}}, "low < high"),
    ({"tuning": {"searchSpace": {"eta": {"type": "float", "low": 0, "high": 0.1, "log": True}}}},
     "log scale needs low > 0"),
    ({"tuning": {"searchSpace": {"max_depth": {"type": "categorical", "choices": []}}}}, "non-empty choices"),
    ({"tuning": {"searchSpace": {"nonsense_param": {"type": "int", "low": 1, "high": 3}}}},
     "unknown XGBoost parameter"),
    ({"tuning": {"searchSpace": {"Eta": {"type": "int", "low": 1, "high": 3}}}}, "spec.tuning.searchSpace"),
    ({"tuning": {"metric": "f1"}}, "spec.tuning.metric"),
    ({"tuning": {"sampler": {"type": "grid"}}}, "spec.tuning.sampler.type"),
    ({"tuning": {"heartbeatSeconds": 30, "graceSeconds": 20}},
     "graceSeconds must be greater than tuning.heartbeatSeconds"),
    ({"tuning": {"storage": {"secretRef": {"name": "Bad_Name"}}}}, "spec.tuning.storage.secretRef.name"),
    ({"model": {"numBoostRound": 0}}, "spec.model.numBoostRound"),
    ({"gpu": {"rmm": {"initialPoolSize": "lots"}}}, "spec.gpu.rmm.initialPoolSize"),
    ({"gpu": {"count": 17}}, "spec.gpu.count"),
    ({"gpu": {"rmm": {"initialPoolSize": "8"}}}, "spec.gpu.rmm.initialPoolSize"),  # once an 8-byte pool
    ({"model": {"params": {f"p{i}": 1 for i in range(65)}}}, "spec.model.params"),  # once 100,000 keys
    ({"data": {"symbols": ["AAPL"], "source": "file"}}, "data.uri is required"),
    ({"data": {"symbols": ["AAPL"], "source": "postgres"}}, "data.table or data.query is required"),
    ({"target": {"kind": "return"}}, "needs target.kind 'direction'"),
    ({"tuning": {"metric": "rmse"}}, "tuning.metric 'rmse' needs target.kind 'return'"),
    ({"unknownField": 1}, "spec.unknownField"),
    ({"scheduling": {"priorityClassName": "Not A Name"}}, "spec.scheduling.priorityClassName"),
    ({"evaluation": {"pboPartitions": 15}}, "evaluation.pboPartitions must be even"),  # CSCV splits S in halves
    ({"evaluation": {"pboPartitions": 26}}, "spec.evaluation.pboPartitions"),  # C(26, 13) splits: too many
    ({"evaluation": {"costBps": -1}}, "spec.evaluation.costBps"),
]


@pytest.mark.parametrize("spec, field", BAD, ids=[f for _, f in BAD])
def test_bad_specs_are_refused_naming_the_field(kube, kube_namespace, spec, field):
    body = manifest(**copy.deepcopy(spec))
    with pytest.raises(ApiException) as err:
        create(kube, kube_namespace, body)
    assert err.value.status == 422 or (err.value.status == 400 and "unknown field" in err.value.body)
    assert field in json.loads(err.value.body)["message"], err.value.body


def test_missing_data_and_bad_names_are_refused(kube, kube_namespace):
    body = manifest()
    del body["spec"]["data"]
    with pytest.raises(ApiException) as err:
        create(kube, kube_namespace, body)
    assert "spec.data: Required value" in err.value.body
    with pytest.raises(ApiException) as err:
        create(kube, kube_namespace, manifest(name="x" * 51))
    assert "metadata.name must be at most 50 characters" in err.value.body


def test_every_case_is_also_refused_by_the_spec_models():
    """The API server and `nova run` refuse the same inputs (one definition, two enforcers)."""
    from pydantic import ValidationError

    for spec, _ in BAD:
        with pytest.raises(ValidationError):
            TrainingRunSpec.model_validate(manifest(**copy.deepcopy(spec))["spec"])


@pytest.mark.parametrize("example", ["quickstart.yaml", "gpu.yaml", "object-store.yaml"])
def test_examples_are_accepted_and_defaulted_like_the_operator_resolves_them(kube, kube_namespace, example):
    body = yaml.safe_load((ROOT / "examples" / example).read_text())
    stored = create(kube, kube_namespace, body)
    resolved = TrainingRunSpec.model_validate(body["spec"]).model_dump(by_alias=True, mode="json", exclude_none=True)
    assert TrainingRunSpec.model_validate(stored["spec"]).model_dump(
        by_alias=True, mode="json", exclude_none=True) == resolved
    assert stored["spec"]["tuning"]["pruner"]["type"] == body["spec"]["tuning"]["pruner"]["type"]
    assert "searchSpace" in stored["spec"]["tuning"]  # filled in by the API server's defaulting


def test_started_runs_keep_their_data_but_budgets_stay_editable(kube, kube_namespace):
    create(kube, kube_namespace, manifest(name="edit", tuning={"trials": 10, "workers": 2}), dry_run=False)
    api = k8s.CustomObjectsApi(kube)

    def patch(spec: dict) -> None:
        api.patch_namespaced_custom_object(GROUP, VERSION, kube_namespace, PLURAL, "edit", {"spec": spec})

    patch({"tuning": {"trials": 40, "workers": 4}, "suspend": True})
    got = api.get_namespaced_custom_object(GROUP, VERSION, kube_namespace, PLURAL, "edit")
    assert got["spec"]["tuning"]["trials"] == 40 and got["spec"]["suspend"] is True
    for spec, message in [({"data": {"symbols": ["MSFT"]}}, "spec.data is immutable"),
                          ({"target": {"horizon": 2}}, "spec.target is immutable"),
                          ({"tuning": {"metric": "accuracy"}}, "spec.tuning.metric is immutable"),
                          ({"model": {"numBoostRound": 5}}, "spec.model is immutable"),
                          # the worker pods' template: once refused only by being ignored
                          ({"gpu": {"count": 2}}, "spec.gpu is immutable"),
                          ({"image": "example.com/other:1"}, "spec.image is immutable"),
                          ({"resources": {"trainer": {"requests": {"cpu": "4"}}}}, "spec.resources is immutable"),
                          ({"scheduling": {"nodeSelector": {"pool": "a100"}}}, "spec.scheduling is immutable"),
                          ({"prep": {"maxAhead": 5}}, "spec.prep is immutable")]:
        with pytest.raises(ApiException) as err:
            patch(spec)
        assert err.value.status == 422 and message in json.loads(err.value.body)["message"], err.value.body


def test_short_name_and_printer_columns(control_plane, kube, kube_namespace):
    create(kube, kube_namespace, manifest(name="cols"), dry_run=False)
    out = subprocess.run(["kubectl", f"--kubeconfig={control_plane.kubeconfig}", "-n", kube_namespace, "get", "tr"],
                         check=True, capture_output=True, text=True).stdout
    header = out.splitlines()[0].split()
    assert header == ["NAME", "PHASE", "SYMBOLS", "TRIALS", "BEST", "AGE"]
    assert out.splitlines()[1].startswith("cols")
