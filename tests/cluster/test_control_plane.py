"""The test control plane itself: real API server, real controllers and scheduler, kwok nodes (pods that
really run are on the real node: tests/cluster/test_real_node.py)."""

from __future__ import annotations

import json
import os
import socket
import time

import pytest

from tests.cluster import controlplane
from tests.cluster.fixtures import GPU_TOLERATION, KWOK_EXIT_CODE_ANNOTATION

pytestmark = pytest.mark.cluster


def wait_for(fn, what: str, timeout: float = 60, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def get(cp, *args: str) -> dict:
    return json.loads(cp.kubectl("get", "-o", "json", *args).stdout)


def pods_of(cp, ns: str, job: str) -> list[dict]:
    return get(cp, "-n", ns, "pods", "-l", f"batch.kubernetes.io/job-name={job}")["items"]


def job(name: str, container: dict, completions: int = 1, annotations: dict | None = None, **pod_spec) -> dict:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"completions": completions, "parallelism": completions, "backoffLimit": 0,
                     "template": {"metadata": {"annotations": annotations or {}},
                                  "spec": {"restartPolicy": "Never", "containers": [container], **pod_spec}}}}


def apply(cp, ns: str, obj: dict) -> None:
    cp.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(obj))


def test_start_up_time_is_measured(control_plane):
    print(f"\ncontrol plane start-up: {control_plane.startup_seconds:.1f} s")
    assert control_plane.startup_seconds is not None
    # the target from cached binaries is < 20 s; a loaded CI machine gets slack, the number is printed
    assert control_plane.startup_seconds < 60
    version = json.loads(control_plane.get("/version")[1])
    assert version["gitVersion"] == f"v{controlplane.versions()['K8S_VERSION']}"


def test_crd_is_applied_and_served(control_plane, kube_namespace):
    cp = control_plane
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.test.nova.dev"},
        "spec": {"group": "test.nova.dev", "scope": "Namespaced",
                 "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                 "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                     "type": "object", "properties": {"spec": {
                         "type": "object", "required": ["size"],
                         "properties": {"size": {"type": "integer", "minimum": 1}}}}}}}]}}
    cp.kubectl("apply", "-f", "-", input=json.dumps(crd))
    cp.kubectl("wait", "--for=condition=Established", "crd/widgets.test.nova.dev", "--timeout=30s")
    wait_for(lambda: cp.kubectl("api-resources", "--api-group=test.nova.dev", check=False).stdout.count("widgets"),
             "widgets in discovery")
    apply(cp, kube_namespace, {"apiVersion": "test.nova.dev/v1", "kind": "Widget", "metadata": {"name": "w1"},
                               "spec": {"size": 3}})
    assert get(cp, "-n", kube_namespace, "widgets", "w1")["spec"] == {"size": 3}
    refused = cp.kubectl("apply", "-n", kube_namespace, "-f", "-", check=False, input=json.dumps(
        {"apiVersion": "test.nova.dev/v1", "kind": "Widget", "metadata": {"name": "w2"}, "spec": {"size": 0}}))
    assert refused.returncode != 0 and "spec.size" in refused.stderr


def test_job_pods_are_placed_by_the_real_scheduler_on_gpu_nodes_only_when_they_ask(control_plane, kube_namespace):
    cp, ns = control_plane, kube_namespace
    gpu_container = {"name": "train", "image": "trainer:test", "command": ["train"],
                     "resources": {"limits": {"nvidia.com/gpu": "1"}}}
    apply(cp, ns, job("gpu", gpu_container, completions=2, tolerations=[GPU_TOLERATION]))
    apply(cp, ns, job("cpu", {"name": "prep", "image": "prep:test", "command": ["prep"],
                              "resources": {"requests": {"cpu": "1"}}}, completions=2))
    # the same GPU request without the toleration: no node may take it
    apply(cp, ns, job("untolerated", gpu_container))
    # a toleration but more GPUs than any node has (4 each)
    apply(cp, ns, job("too-big", {**gpu_container, "resources": {"limits": {"nvidia.com/gpu": "5"}}},
                      tolerations=[GPU_TOLERATION]))

    def running(name: str, n: int):
        pods = pods_of(cp, ns, name)
        return pods if len(pods) == n and all(p["status"].get("phase") == "Running" for p in pods) else None

    gpu_pods = wait_for(lambda: running("gpu", 2), "2 running GPU pods")
    cpu_pods = wait_for(lambda: running("cpu", 2), "2 running CPU pods")
    for p in gpu_pods + cpu_pods:
        assert p["metadata"]["ownerReferences"][0]["kind"] == "Job"  # made by the real Job controller
    assert {p["spec"]["nodeName"] for p in gpu_pods} <= {"kwok-gpu-0", "kwok-gpu-1"}
    assert {p["spec"]["nodeName"] for p in cpu_pods} <= {"kwok-cpu-0", "kwok-cpu-1"}

    for name, why in (("untolerated", "untolerated taint"), ("too-big", "Insufficient nvidia.com/gpu")):
        pod = wait_for(lambda n=name: next((p for p in pods_of(cp, ns, n) if any(
            c["type"] == "PodScheduled" and c["status"] == "False" for c in p["status"].get("conditions", []))),
            None), f"{name} reported unschedulable")
        cond = next(c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled")
        assert pod["status"]["phase"] == "Pending" and not pod["spec"].get("nodeName")
        assert cond["reason"] == "Unschedulable" and why in cond["message"], cond

    # kwok pods stay Running until a test asks for an outcome
    time.sleep(1)
    assert running("gpu", 2)
    for p in gpu_pods:
        cp.kubectl("annotate", "-n", ns, "pod", p["metadata"]["name"], f"{KWOK_EXIT_CODE_ANNOTATION}=0")
    cp.kubectl("wait", "-n", ns, "--for=condition=Complete", "job/gpu", "--timeout=60s")
    # one pod failing fails the Job (backoffLimit 0), whose controller then deletes the other pod:
    # annotating that one too raced the deletion (NotFound)
    cp.kubectl("annotate", "-n", ns, "pod", cpu_pods[0]["metadata"]["name"], f"{KWOK_EXIT_CODE_ANNOTATION}=3")
    cp.kubectl("wait", "-n", ns, "--for=condition=Failed", "job/cpu", "--timeout=60s")
    failed = pods_of(cp, ns, "cpu")
    assert any(p["status"]["phase"] == "Failed" and
               p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3 for p in failed)


def test_kwok_job_outcome_from_the_pod_template(control_plane, kube_namespace):
    cp, ns = control_plane, kube_namespace
    apply(cp, ns, job("ok", {"name": "c", "image": "x", "command": ["x"]}, completions=3,
                      annotations={KWOK_EXIT_CODE_ANNOTATION: "0"}))
    cp.kubectl("wait", "-n", ns, "--for=condition=Complete", "job/ok", "--timeout=60s")
    assert get(cp, "-n", ns, "job", "ok")["status"]["succeeded"] == 3


def test_helm_installs_a_chart_on_the_cluster(control_plane, kube_namespace, tmp_path):
    cp, ns = control_plane, kube_namespace
    assert f"v{controlplane.versions()['HELM_VERSION']}" in cp.helm("version", "--short").stdout
    chart = tmp_path / "tiny"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: tiny\nversion: 0.1.0\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cm\n"
        "data:\n  x: {{ .Values.x | quote }}\n")
    cp.helm("install", "rel", str(chart), "-n", ns, "--set", "x=42", "--wait", "--timeout", "60s")
    assert get(cp, "-n", ns, "configmap", "rel-cm")["data"] == {"x": "42"}
    assert "rel" in cp.helm("list", "-n", ns, "-q").stdout


def test_a_stopped_control_plane_leaves_no_process_or_port(control_plane):
    cp = controlplane.start(nodes=[], log=lambda _m: None)
    pids, ports = cp.pids(), dict(cp.ports)
    assert cp.get("/readyz")[0] == 200
    cp.stop()
    for pid in pids.values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    for port in ports.values():
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))  # nothing listens there any more
    assert not cp.workdir.exists()
