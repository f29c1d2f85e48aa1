"""Every pod Nova builds passes the Kubernetes "restricted" Pod Security Standard, checked by the
real kube-apiserver's PodSecurity admission: the test namespace is labelled
`pod-security.kubernetes.io/enforce=restricted`, a privileged pod is refused there (so enforcement
is really on), and the pods of the operator's worker and refit Jobs are admitted: created directly
from the Job templates, and created by the real Job controller from the real Jobs."""

from __future__ import annotations

import copy
import json
import time

import pytest

from nova.manifest import parse_run
from nova.spec import resolve
from tests.conftest import small_run_manifest

pytestmark = [pytest.mark.reliability, pytest.mark.cluster]


def _runs():
    cpu = small_run_manifest(name="cpu")
    gpu = small_run_manifest(name="gpu", symbols=("AAA", "BBB"), trials=8, workers=4, gpu={"count": 2})
    gpu["spec"]["tuning"]["storage"] = {"secretRef": {"name": "optuna-db", "key": "url"}}
    gpu["spec"]["scheduling"] = {"nodeSelector": {"nova.dev/accelerator": "nvidia"},
                                 "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
                                 "priorityClassName": None}
    gpu["spec"]["data"] = {"source": "postgres", "table": "bars", "symbols": ["AAA", "BBB"],
                           "secretRef": {"name": "bars-db", "key": "dsn"}}
    gpu["spec"]["output"] = {"uri": "/models/gpu"}
    return [cpu, gpu]


def _children(namespace: str):
    from nova_operator import builders

    cfg = builders.OperatorConfig(trainer_image="nova-trainer:test", output_claim="models")
    for manifest in _runs():
        manifest["metadata"]["namespace"] = namespace
        manifest["spec"]["scheduling"] = {k: v for k, v in manifest["spec"].get("scheduling", {}).items()
                                          if v is not None}
        run = resolve(parse_run(manifest))
        owner = builders.owner_reference(run.name, "00000000-0000-0000-0000-000000000000")
        yield run, builders.worker_job(run, owner, cfg), builders.refit_job(run, owner, cfg)


@pytest.fixture
def restricted_ns(control_plane, kube_namespace):
    control_plane.kubectl("label", "namespace", kube_namespace, "pod-security.kubernetes.io/enforce=restricted",
                          "pod-security.kubernetes.io/enforce-version=latest", "--overwrite")
    return kube_namespace


def _pod_from(job: dict, namespace: str) -> dict:
    template = copy.deepcopy(job["spec"]["template"])
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{job['metadata']['name']}-probe", "namespace": namespace,
                         "labels": template["metadata"].get("labels", {})},
            "spec": template["spec"]}


def test_enforcement_is_on(control_plane, restricted_ns):
    from kubernetes import client as k8s
    from kubernetes.client.exceptions import ApiException

    core = k8s.CoreV1Api(control_plane.api_client())
    bad = {"metadata": {"name": "privileged"},
           "spec": {"containers": [{"name": "c", "image": "busybox", "securityContext": {"privileged": True}}]}}
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod(restricted_ns, bad, dry_run="All")
    message = json.loads(err.value.body)["message"]
    assert err.value.status == 403 and 'violates PodSecurity "restricted:latest"' in message, message


def test_pods_of_every_job_are_admitted(control_plane, restricted_ns):
    from kubernetes import client as k8s
    from kubernetes.client.exceptions import ApiException

    core = k8s.CoreV1Api(control_plane.api_client())
    refused = []
    for _run, *jobs in _children(restricted_ns):
        for job in jobs:
            try:
                core.create_namespaced_pod(restricted_ns, _pod_from(job, restricted_ns), dry_run="All")
            except ApiException as exc:
                refused.append(f"{job['metadata']['name']}: {exc.body}")
    assert not refused, refused


def test_the_job_controller_creates_the_pods_in_a_restricted_namespace(control_plane, restricted_ns):
    """Real Jobs (no owner: nothing would own them here), real pods made by kube-controller-manager:
    a pod refused by PodSecurity would show as a FailedCreate event on its Job instead."""
    from kubernetes import client as k8s

    api = control_plane.api_client()
    batch, core = k8s.BatchV1Api(api), k8s.CoreV1Api(api)
    expected = {}
    for _run, workers, refit in _children(restricted_ns):
        for job in (workers, refit):
            job["metadata"].pop("ownerReferences")
            job["spec"]["suspend"] = False
            batch.create_namespaced_job(restricted_ns, job)
            expected[job["metadata"]["name"]] = job["spec"]["parallelism"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pods = core.list_namespaced_pod(restricted_ns).items
        made = {name: sum(1 for p in pods if (p.metadata.labels or {}).get("job-name") == name) for name in expected}
        failed = [e for e in core.list_namespaced_event(restricted_ns).items if e.reason == "FailedCreate"]
        assert not failed, [e.message for e in failed]
        if all(made[n] >= want for n, want in expected.items()):
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"the Job controller made {made}, expected {expected}")
    for name in expected:
        batch.delete_namespaced_job(name, restricted_ns, propagation_policy="Background")
