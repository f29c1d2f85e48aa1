"""Object-store URIs as the contract sees them, and the serving files' names (no server needed)."""

from __future__ import annotations

import pytest
import yaml

from nova import object_store as o
from nova.spec import ObjectStoreSpec, ResolvedRun, TrainingRunSpec
from nova_trainer.serving import inference_service, service_name


def run(output: dict | None = None) -> ResolvedRun:
    spec = {"data": {"symbols": ["AAPL"]}, **({"output": output} if output else {})}
    return ResolvedRun(name="r1", namespace="team-a", spec=TrainingRunSpec.model_validate(spec))


def test_uris_parse_and_join():
    loc = o.parse("s3://bucket/some/prefix/")
    assert (loc.scheme, loc.bucket, loc.key, loc.path, str(loc)) == (
        "s3", "bucket", "some/prefix", "bucket/some/prefix", "s3://bucket/some/prefix")
    assert o.is_remote("S3://b/x") and o.is_remote("gs://b") and o.is_remote("az://c/x")
    assert not o.is_remote("/data/bars") and not o.is_remote("bars/s3://x") and not o.is_remote(None)
    assert o.join("s3://b/p/", "ns", "/run/") == "s3://b/p/ns/run"
    for bad in ("http://b/x", "s3://", "/local"):
        with pytest.raises(ValueError):
            o.parse(bad)


def test_runs_get_their_own_prefix_and_local_folders_stay_as_they_are(tmp_path):
    assert o.model_root(run({"uri": "s3://models/nova/"}), tmp_path) == "s3://models/nova/team-a/r1"
    assert o.model_root(run({"uri": "/models/r1"}), "/models/r1") == "/models/r1"
    assert o.model_root(run(), tmp_path) == str(tmp_path)
    assert o.local_dir(run({"uri": "s3://models/nova"})) == "runs/r1", "a bucket is never a local folder"
    assert o.local_dir(run({"uri": "/models/x"})) == "/models/x" and o.local_dir(run(), "w") == "w"


def test_describe_names_the_bucket_and_the_endpoint_only():
    store = ObjectStoreSpec(endpoint="http://minio:9000", credentialsSecret="creds")
    assert o.describe("s3://bars/daily", store) == "bucket 'bars' at http://minio:9000"
    assert o.describe("s3://bars", ObjectStoreSpec(region="eu-west-1")) == "bucket 'bars' at S3 region eu-west-1"


def test_inference_service_names_are_dns_labels():
    assert service_name("r1", "BRK.B") == "r1-brk-b"
    assert service_name("9lives", "^GSPC") == "m-9lives-gspc"
    assert len(service_name("a" * 50, "B" * 32)) <= 63
    isvc = yaml.safe_load(inference_service("^GSPC", "s3://m/ns/r/^GSPC", {"name": "r", "namespace": "ns"}))
    assert isvc["metadata"] == {"name": "r-gspc", "labels": {"nova.dev/run": "r", "nova.dev/symbol": "_GSPC"},
                                "namespace": "ns"}


def test_kserve_storage_uri_on_the_claim_is_pvc_and_on_a_bucket_the_folder(monkeypatch):
    from nova_trainer.serving import storage_uri

    assert storage_uri("s3://m/ns/r/AAA", "AAA") == "s3://m/ns/r/AAA"
    assert storage_uri("/output/ns/r/AAA", "AAA") == "/output/ns/r/AAA"
    monkeypatch.setenv("NOVA_OUTPUT_SERVING_URI", "pvc://models/ns/r")
    assert storage_uri("/output/ns/r/AAA", "AAA") == "pvc://models/ns/r/AAA"
    assert storage_uri("s3://m/ns/r/AAA", "AAA") == "s3://m/ns/r/AAA"
