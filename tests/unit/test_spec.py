"""The spec: defaults, and errors that name the field."""

import pytest

from nova.errors import SpecError
from nova.manifest import load_run, parse_run
from nova.spec import ResolvedRun, TrainingRunSpec, resolve


def manifest(**spec):
    base = {"data": {"symbols": ["AAPL"]}}
    for key, value in spec.items():
        base[key] = value
    return {"apiVersion": "nova.dev/v1alpha1", "kind": "TrainingRun", "metadata": {"name": "r"}, "spec": base}


def test_defaults_resolve_and_round_trip_through_run_json():
    run = resolve(parse_run(manifest()))
    again = ResolvedRun.from_json(run.to_json())
    assert again == run
    assert run.spec.tuning.resolved_direction == "maximize"
    assert run.study_name("AAPL") == "default.r.AAPL"
    assert '"walkForward"' in run.to_json() and '"quantileDMatrix"' in run.to_json()


@pytest.mark.parametrize("spec, field", [
    ({"validation": {"walkForward": {"gap": 0}}, "target": {"horizon": 3}}, "gap must be >= target.horizon"),
    ({"data": {"symbols": ["AAPL"], "start": "2010-01-01", "end": "2009-01-01"}}, "data.start must be before"),
    ({"data": {"symbols": []}}, "spec.data.symbols"),
    ({"data": {"symbols": ["../../etc/passwd"]}}, "spec.data.symbols[0]"),
    ({"tuning": {"trials": 2, "workers": 3}}, "workers must not exceed"),
    ({"tuning": {"searchSpace": {"eta": {"type": "float", "low": 0.3, "high": 0.1}}}}, "low < high"),
    ({"tuning": {"searchSpace": {"eta": {"type": "float", "low": 0.0, "high": 0.1, "log": True}}}},
     "log scale needs low > 0"),
    ({"tuning": {"searchSpace": {"booster": {"type": "categorical", "choices": []}}}}, "categorical"),
    ({"tuning": {"searchSpace": {"nonsense_param": {"type": "int", "low": 1, "high": 3}}}},
     "unknown XGBoost parameter"),
    ({"tuning": {"metric": "f1"}}, "spec.tuning.metric"),
    ({"tuning": {"sampler": {"type": "grid"}}}, "spec.tuning.sampler.type"),
    ({"model": {"numBoostRound": 0}}, "spec.model.numBoostRound"),
    ({"gpu": {"rmm": {"initialPoolSize": "lots"}}}, "spec.gpu.rmm.initialPoolSize"),
    ({"data": {"symbols": ["AAPL"], "source": "file"}}, "data.uri is required"),
    ({"target": {"kind": "return"}}, "needs target.kind 'direction'"),
    ({"unknownField": 1}, "spec.unknownField"),
    ({"evaluation": {"pboPartitions": 15}}, "evaluation.pboPartitions must be even"),
    ({"evaluation": {"costBps": -1}}, "spec.evaluation.costBps"),
    ({"tuning": {"selection": "luckiest"}}, "spec.tuning.selection"),
    ({"validation": {"holdout": {"fraction": 0.9}}}, "spec.validation.holdout.fraction"),
    ({"data": {"symbols": ["AAPL"], "adjust": "maybe"}}, "spec.data.adjust"),
    ({"data": {"symbols": ["AAPL"], "columns": "hl"}}, "spec.data.columns"),
    ({"data": {"symbols": ["AAPL"], "source": "file", "uri": "s3://b/x", "claimName": "bars"}}, "data.claimName needs"),
    ({"data": {"symbols": ["AAPL"], "source": "file", "uri": "/abs", "claimName": "bars"}}, "data.claimName needs"),
    ({"data": {"symbols": ["AAPL"], "claimName": "bars"}}, "data.claimName needs"),
    ({"output": {"objectStore": {"endpoint": "minio:9000"}}}, "spec.output.objectStore.endpoint"),
    ({"output": {"objectStore": {"credentialsSecret": "Not_A_Name"}}}, "spec.output.objectStore.credentialsSecret"),
])

def test_bad_specs_name_the_field(spec, field):
    with pytest.raises(SpecError) as err:
        parse_run(manifest(**spec))
    assert field in str(err.value)


def test_trust_defaults():
    spec = parse_run(manifest()).spec
    assert spec.evaluation.cost_bps == 1.0 and spec.evaluation.pbo_partitions == 16
    assert spec.validation.holdout.enabled and spec.validation.holdout.fraction == 0.1
    assert spec.tuning.selection == "best" and spec.data.adjust == "auto" and spec.data.columns == "ohlcv"


def test_load_run_names_the_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("kind: TrainingRun\nmetadata: {name: x}\nspec: {data: {symbols: [../x]}}\n")
    with pytest.raises(SpecError, match=str(path)):
        load_run(path)
    with pytest.raises(SpecError, match="cannot read"):
        load_run(tmp_path / "missing.yaml")


def test_examples_are_valid():
    from pathlib import Path

    for path in Path("examples").glob("*.yaml"):
        load_run(path)


def test_errors_use_the_users_own_keys_and_one_line_per_mistake():
    """model.params.max_depth was reported as `spec.model.params.maxDepth.float: ...` plus three
    more lines (one per member of the value's union)."""
    from pydantic import ValidationError

    from nova.spec import format_validation_error

    with pytest.raises(ValidationError) as err:
        TrainingRunSpec.model_validate({"data": {"symbols": ["AAPL", "b/c"]}, "model": {"params": {"max_depth": [3]}}})
    lines = format_validation_error(err.value, "spec.").splitlines()
    assert lines[0].startswith("spec.data.symbols[1]: ")
    assert lines[1] == "spec.model.params.max_depth: must be a number, an integer, a string, a boolean (got list: [3])"
    assert len(lines) == 2


def test_a_pool_size_needs_its_unit():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="initialPoolSize|initial_pool_size"):
        TrainingRunSpec.model_validate({"data": {"symbols": ["AAPL"]}, "gpu": {"rmm": {"initialPoolSize": "8"}}})
    assert TrainingRunSpec.model_validate({"data": {"symbols": ["AAPL"]},
                                           "gpu": {"rmm": {"initialPoolSize": "512Mi"}}}).gpu.rmm.initial_pool_size
