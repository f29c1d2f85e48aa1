"""`helm install` of charts/nova into the real test control plane (etcd, kube-apiserver,
controller-manager, scheduler built from upstream; see tests/cluster/README.md).

- The chart's objects are created for real: CRD (Established), ServiceAccount, RBAC, operator
  Deployment and its pod, admitted under the *restricted* Pod Security Standard; the PostgreSQL
  Secret's generated password survives `helm upgrade` (lookup) and `helm uninstall` (keep).
- The chart's operator running from its image in a real pod, driving a run to Succeeded, is
  tests/cluster/test_real_node.py (on the real node).
"""

from __future__ import annotations

import base64
import os
import socket
from pathlib import Path

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from tests.chart.helm import CHART, helm_binary, run_helm
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.integration, pytest.mark.slow]
SHIM = Path(__file__).resolve().parent / "incluster_shim.py"
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
CHART_RUNNER = "chart-runner"
ON_CHART_RUNNER = {"kubernetes.io/hostname": CHART_RUNNER}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def helm():
    return helm_binary()


class Helm:
    def __init__(self, helm: Path, kubeconfig: Path) -> None:
        self.bin, self.kubeconfig = helm, kubeconfig

    def __call__(self, *args: str, check: bool = True):
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "HELM_CACHE_HOME": "/tmp/nova-helm/cache",
               "HELM_CONFIG_HOME": "/tmp/nova-helm/config", "HELM_DATA_HOME": "/tmp/nova-helm/data"}
        return run_helm(self.bin, *args, check=check, env=env, timeout=300)


@pytest.fixture
def helm_cli(helm, control_plane) -> Helm:
    return Helm(helm, control_plane.kubeconfig)


@pytest.fixture
def api(control_plane):
    c = control_plane.api_client()
    yield c
    c.close()


def restricted(control_plane, namespace: str) -> None:
    control_plane.kubectl("label", "namespace", namespace, "--overwrite",
                          "pod-security.kubernetes.io/enforce=restricted",
                          "pod-security.kubernetes.io/enforce-version=latest")


def can_i(control_plane, sa: str, namespace: str, verb: str, resource: str, where: str | None = None) -> bool:
    args = ["auth", "can-i", verb, resource, f"--as=system:serviceaccount:{namespace}:{sa}"]
    args += ["-n", where] if where else ["--all-namespaces"]
    return control_plane.kubectl(*args, check=False).stdout.strip() == "yes"


# ------------------------------------------------------------------------------ objects (cluster)
def test_install_creates_crd_rbac_operator_and_postgresql(control_plane, helm_cli, api, kube_namespace):
    ns = kube_namespace
    restricted(control_plane, ns)
    out = helm_cli("install", "nova", str(CHART), "--namespace", ns, "--set", "operator.replicaCount=1",
                   "--set", "fullnameOverride=nova-" + ns)
    assert f"kubectl -n {ns} get tr -w" in out.stdout and "every namespace" in out.stdout
    name = f"nova-{ns}"
    ext = k8s.ApiextensionsV1Api(api)
    crd = wait_for(lambda: (c := ext.read_custom_resource_definition("trainingruns.nova.dev")) and any(
        x.type == "Established" and x.status == "True" for x in (c.status.conditions or [])) and c,
        "the CRD Established")
    assert crd.spec.names.short_names == ["tr"]

    rbac = k8s.RbacAuthorizationV1Api(api)
    role = rbac.read_cluster_role(f"{name}-operator")
    assert any("trainingruns" in r.resources for r in role.rules)
    assert rbac.read_cluster_role_binding(f"{name}-operator").subjects[0].name == name
    assert rbac.read_cluster_role(f"{name}-discovery")
    core, apps = k8s.CoreV1Api(api), k8s.AppsV1Api(api)
    assert core.read_namespaced_service_account(name, ns)

    # what the API server's RBAC grants the operator's ServiceAccount (SubjectAccessReview via kubectl)
    assert can_i(control_plane, name, ns, "watch", "trainingruns.nova.dev")
    assert can_i(control_plane, name, ns, "patch", "trainingruns.nova.dev/status", "default")
    assert can_i(control_plane, name, ns, "create", "jobs.batch", "default")
    assert can_i(control_plane, name, ns, "get", "secrets", "default")
    assert not can_i(control_plane, name, ns, "list", "secrets", "default")
    assert not can_i(control_plane, name, ns, "delete", "jobs.batch", "default")
    assert not can_i(control_plane, name, ns, "create", "pods", "default")
    assert not can_i(control_plane, name, ns, "get", "nodes")

    dep = apps.read_namespaced_deployment(f"{name}-operator", ns)
    # leader election is on by default: even one replica rolls (the Lease keeps a single leader)
    assert dep.spec.replicas == 1 and dep.spec.strategy.type == "RollingUpdate"
    # the Deployment controller creates the pod and the restricted Pod Security admission accepts it
    pods = wait_for(lambda: core.list_namespaced_pod(ns, label_selector="app.kubernetes.io/component=operator").items,
                    "the operator pod (admitted under the restricted Pod Security Standard)",
                    diagnose=lambda: str([e.message for e in core.list_namespaced_event(ns).items]))
    assert pods[0].spec.service_account_name == name

    # PostgreSQL: Secret with a generated password, StatefulSet, its claim created from the template
    secret = core.read_namespaced_secret(f"{name}-postgresql", ns)
    password = base64.b64decode(secret.data["password"]).decode()
    assert len(password) == 32
    assert apps.read_namespaced_stateful_set(f"{name}-postgresql", ns).spec.replicas == 1
    wait_for(lambda: core.read_namespaced_persistent_volume_claim(f"data-{name}-postgresql-0", ns),
             "the PostgreSQL claim")

    # upgrade: the password is looked up, not regenerated
    helm_cli("upgrade", "nova", str(CHART), "--namespace", ns, "--reuse-values", "--set", "operator.statusInterval=5")
    again = core.read_namespaced_secret(f"{name}-postgresql", ns)
    assert base64.b64decode(again.data["password"]).decode() == password
    assert apps.read_namespaced_deployment(f"{name}-operator", ns).metadata.generation == 2

    # uninstall: the operator and RBAC go; the database Secret stays with the data (resource-policy keep)
    helm_cli("uninstall", "nova", "--namespace", ns, "--wait")
    with pytest.raises(ApiException) as gone:
        rbac.read_cluster_role(f"{name}-operator")
    assert gone.value.status == 404
    assert core.read_namespaced_secret(f"{name}-postgresql", ns)
    assert ext.read_custom_resource_definition("trainingruns.nova.dev"), "Helm never deletes a CRD from crds/"


def test_install_refuses_bad_values_against_the_cluster(control_plane, helm_cli, kube_namespace):
    proc = helm_cli("install", "bad", str(CHART), "--namespace", kube_namespace, "--set", "storage.mode=external",
                    check=False)
    assert proc.returncode != 0 and "/storage/existingSecret/name" in proc.stderr
    assert helm_cli("list", "--namespace", kube_namespace, "-q").stdout.strip() == ""


# ------------------------------------------------------------------------ the operator, for real
