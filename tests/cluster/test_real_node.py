"""Real pods on the real node (kubelet + containerd + runc, tests/cluster/node.py) from Nova's own
images: exit codes and logs from real containers, and the chart's operator in a pod under the
chart's own securityContext (non-root, read-only root, capabilities dropped, RuntimeDefault
seccomp) in a namespace that enforces the restricted Pod Security Standard, probed by kubelet on
/healthz, reaching the API server through the `kubernetes` Service as in any cluster, and driving a
TrainingRun to Succeeded in real worker and refit pods of the trainer image."""

from __future__ import annotations

import json
import urllib.request
from urllib.parse import urlsplit, urlunsplit

import pytest
import yaml
from kubernetes import client as k8s

from tests.chart.helm import CHART
from tests.cluster.fixtures import REAL_NODE_SELECTOR
from tests.conftest import small_run_manifest
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
RESTRICTED = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
              "capabilities": {"drop": ["ALL"]}}
POD_SECURITY = {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000,
                "seccompProfile": {"type": "RuntimeDefault"}}


@pytest.fixture
def core(control_plane):
    api = control_plane.api_client()
    yield k8s.CoreV1Api(api)
    api.close()


def restricted(control_plane, namespace: str) -> None:
    control_plane.kubectl("label", "namespace", namespace, "--overwrite",
                          "pod-security.kubernetes.io/enforce=restricted",
                          "pod-security.kubernetes.io/enforce-version=latest")


def pod(name: str, image: str, command: list[str]) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"restartPolicy": "Never", "nodeSelector": REAL_NODE_SELECTOR,
                     "automountServiceAccountToken": False, "securityContext": POD_SECURITY,
                     "containers": [{"name": "main", "image": image, "imagePullPolicy": "Never",
                                     "command": command, "securityContext": RESTRICTED}]}}


def test_real_containers_report_their_exit_codes_and_output(control_plane, real_node, core, kube_namespace):
    ns = kube_namespace
    restricted(control_plane, ns)
    trainer = real_node.images.trainer
    show = "import xgboost; print('xgb', xgboost.__version__)"
    core.create_namespaced_pod(ns, pod("ok", trainer, ["python", "-c", show]))
    core.create_namespaced_pod(ns, pod("fails", trainer, ["python", "-c", "import sys; sys.exit(3)"]))

    def finished(name: str):
        p = core.read_namespaced_pod(name, ns)
        return p if p.status.phase in ("Succeeded", "Failed") else None

    ok = wait_for(lambda: finished("ok"), "pod ok to finish", timeout=240, diagnose=real_node.diagnose)
    bad = wait_for(lambda: finished("fails"), "pod fails to finish", timeout=240, diagnose=real_node.diagnose)
    assert ok.status.phase == "Succeeded", real_node.diagnose()
    assert ok.spec.node_name == real_node.name
    assert "xgb 3." in real_node.pod_log(ns, "ok", "main")
    assert bad.status.phase == "Failed"
    assert bad.status.container_statuses[0].state.terminated.exit_code == 3


def test_chart_operator_in_a_real_pod_serves_healthz_and_drives_a_run(control_plane, real_node, core, pg_url,
                                                                      kube_namespace, tmp_path):
    ns = kube_namespace
    restricted(control_plane, ns)
    # the pods reach the test PostgreSQL (loopback) through a forwarder on the bridge address
    url = urlsplit(pg_url)
    netloc = f"{url.username}:{url.password}@{real_node.host_ip}:{real_node.forward(url.port)}"
    core.create_namespaced_secret(ns, {"metadata": {"name": "optuna"},
                                       "stringData": {"url": urlunsplit(url._replace(netloc=netloc))}})
    images = real_node.images

    def image(ref: str) -> dict:
        repository, tag = ref.rsplit(":", 1)
        return {"repository": repository, "tag": tag, "pullPolicy": "Never"}

    values = {
        "fullnameOverride": "nova",
        "image": {"operator": image(images.operator), "trainer": image(images.trainer)},
        "rbac": {"scope": "namespace", "clusterDiscovery": False},
        "storage": {"mode": "external", "existingSecret": {"name": "optuna", "key": "url"}},
        "operator": {"replicaCount": 1, "statusInterval": 2, "nodeSelector": REAL_NODE_SELECTOR},
    }
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    control_plane.helm("install", "nova", str(CHART), "--namespace", ns, "-f", str(values_file), timeout=300)

    def operator_pod():
        pods = core.list_namespaced_pod(ns, label_selector="app.kubernetes.io/component=operator").items
        return pods[0] if pods else None

    def operator_log() -> str:
        p = operator_pod()
        return real_node.pod_log(ns, p.metadata.name, "operator")[-6000:] if p else "(no operator pod)"

    def diagnose() -> str:
        events = [f"{e.involved_object.name}: {e.reason} {e.message}" for e in core.list_namespaced_event(ns).items]
        return f"operator log:\n{operator_log()}\nevents:\n" + "\n".join(events[-30:]) + "\n" + real_node.diagnose()

    ready = wait_for(lambda: (p := operator_pod()) and p.status.container_statuses and
                     p.status.container_statuses[0].ready and p, "the operator pod Ready (kubelet's probes)",
                     timeout=300, diagnose=diagnose)
    container = ready.spec.containers[0]
    assert container.image == images.operator and container.security_context.read_only_root_filesystem
    assert ready.spec.node_name == real_node.name
    port = next(p.container_port for p in container.ports if p.name in ("health", "healthz", "http")) \
        if container.ports else 8080
    with urllib.request.urlopen(f"http://{ready.status.pod_ip}:{port}/healthz", timeout=10) as r:
        assert r.status == 200

    run = small_run_manifest("real-pods", symbols=("AAA",), trials=4, workers=2,
                             scheduling={"nodeSelector": REAL_NODE_SELECTOR})
    run["spec"]["resources"] = {"trainer": {"requests": {"cpu": "100m", "memory": "256Mi"}},
                                "prep": {"requests": {"cpu": "50m", "memory": "128Mi"}}}
    custom = k8s.CustomObjectsApi(control_plane.api_client())
    custom.create_namespaced_custom_object("nova.dev", "v1alpha1", ns, "trainingruns", run)

    def status() -> dict:
        return custom.get_namespaced_custom_object("nova.dev", "v1alpha1", ns, "trainingruns",
                                                   "real-pods").get("status") or {}

    def run_diagnose() -> str:
        lines = [f"status: {json.dumps(status(), indent=1)[:3000]}"]
        for p in core.list_namespaced_pod(ns).items:
            lines.append(f"pod {p.metadata.name}: {p.status.phase}")
            for c in (p.spec.init_containers or []) + p.spec.containers:
                lines.append(f"--- {c.name}:\n{real_node.pod_log(ns, p.metadata.name, c.name)[-1500:]}")
        return "\n".join(lines) + "\n" + diagnose()

    wait_for(lambda: status().get("phase") in ("Succeeded", "Failed"), "the run to finish in real pods",
             timeout=600, diagnose=run_diagnose, interval=2)
    final = status()
    assert final["phase"] == "Succeeded", run_diagnose()
    done, budget = (int(x) for x in final["trials"].split("/"))
    assert budget == 4 and 4 <= done <= 5
    workers = core.list_namespaced_pod(ns, label_selector="job-name=real-pods-workers").items
    assert workers and all(p.spec.node_name == real_node.name for p in workers)
    assert all(c.image == images.trainer for p in workers for c in p.spec.containers)
    control_plane.helm("uninstall", "nova", "--namespace", ns, "--wait", timeout=300)
