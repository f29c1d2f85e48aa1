"""A TrainingRun whose bars and models are both on the S3-compatible server (SeaweedFS on loopback,
reached by the real node's pods through the bridge), with the keys only in a Secret: it reaches
Succeeded, its status.model URIs exist on the server, and the secret key appears in no status,
Event, ConfigMap, log line or model card."""

from __future__ import annotations

import json

import pytest
from kubernetes import client as k8s
from pyarrow.fs import FileSelector

from tests.integration.test_object_store import upload_universe
from tests.operator.e2e import tiny_quickstart
from tests.s3.server import ACCESS_KEY, SECRET_KEY

pytestmark = [pytest.mark.cluster, pytest.mark.integration, pytest.mark.slow]


def test_a_run_on_the_bucket_succeeds_and_its_models_are_there(e2e, tmp_path, s3_server, s3_bucket):
    uri = upload_universe(s3_server, s3_bucket, symbols=("AAA",))
    e2e.kubectl("create", "secret", "generic", "s3-creds", f"--from-literal=AWS_ACCESS_KEY_ID={ACCESS_KEY}",
                f"--from-literal=AWS_SECRET_ACCESS_KEY={SECRET_KEY}")
    store = {"endpoint": e2e.reach(s3_server.endpoint), "region": "us-east-1", "credentialsSecret": "s3-creds"}
    manifest = tiny_quickstart("s3", trials=3, workers=1)
    manifest["spec"]["data"] = {"source": "file", "uri": uri, "symbols": ["AAA"], "objectStore": store}
    manifest["spec"]["output"] = {"uri": f"s3://{s3_bucket}/models", "objectStore": store}
    e2e.operator(NOVA_OUTPUT_CLAIM="")  # the models go to the bucket, not to a claim
    name = e2e.start(manifest, tmp_path)
    status = e2e.finished(name)

    model = status["model"]
    assert model["uri"] == f"s3://{s3_bucket}/models/{e2e.ns}/{name}"
    (aaa,) = model["symbols"]
    assert aaa["uri"] == f"{model['uri']}/AAA" and aaa["file"] == "AAA/model.ubj"
    fs = s3_server.filesystem()
    folder = aaa["uri"].removeprefix("s3://")
    names = sorted(i.base_name for i in fs.get_file_info(FileSelector(folder)))
    assert [n for n in names if not n.endswith(".png")] == [
        "card.json", "inferenceservice.yaml", "model-settings.json", "model.json", "model.ubj"]
    assert {"equity.png", "history.png"} <= set(names)  # the refit's figures, beside the card
    with fs.open_input_stream(f"{folder}/card.json") as f:
        card = f.read().decode()
    assert json.loads(card)["run"] == {"name": name, "namespace": e2e.ns, "generation": 1}

    # the keys went to the pods as references only: nowhere a user or a reader of the API sees them
    seen = [json.dumps(status), card]
    core = e2e.core
    seen += [json.dumps(k8s.ApiClient().sanitize_for_serialization(cm.data)) for cm in
             core.list_namespaced_config_map(e2e.ns).items]
    seen += [f"{ev.reason} {ev.message}" for ev in core.list_namespaced_event(e2e.ns).items]
    for pod in core.list_namespaced_pod(e2e.ns).items:
        seen.append(json.dumps(k8s.ApiClient().sanitize_for_serialization(pod.spec)))
        for c in (pod.spec.init_containers or []) + pod.spec.containers:
            seen.append(e2e.log(pod.metadata.name, c.name))
    assert not [text[:200] for text in seen if SECRET_KEY in text]
