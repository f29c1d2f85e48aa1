"""`helm install` of charts/nova into the real test control plane (etcd, kube-apiserver,
controller-manager, scheduler built from upstream; see tests/cluster/README.md).

- The chart's objects are created for real: CRD (Established), ServiceAccount, RBAC, operator
  Deployment and its pod, admitted under the *restricted* Pod Security Standard; the PostgreSQL
  Secret's generated password survives `helm upgrade` (lookup) and `helm uninstall` (keep).
- The operator really runs from the chart: its pod is scheduled on the local-runner node (a test
  stand-in for kubelet that runs containers as local processes; there is no container runtime, so
  the image is not used: `operator.command` points at tests/chart/incluster_shim.py, which runs
  `nova-operator` with the chart's args, env and the pod's own ServiceAccount token, i.e. with the
  chart's RBAC and nothing more). It then drives a TrainingRun (workers and refit also on the
  local runner, studies in a real PostgreSQL) to Succeeded.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import urllib.request
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from tests.chart.helm import CHART, helm_binary, run_helm
from tests.cluster import local_runner as runner_module
from tests.cluster.fixtures import LOCAL_RUNNER_TOLERATION
from tests.cluster.local_runner import LocalRunner
from tests.conftest import small_run_manifest
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


def _single_pass_remap(original):
    """LocalRunner's remap, in one pass: each mount path is rewritten once, even when the folder it
    becomes starts with another mount path (e.g. /tmp/...)."""

    def remap(self, value: str, mounts: dict[str, str]) -> str:
        if getattr(self.runner, "node_name", None) != CHART_RUNNER or not mounts:
            return original(self, value, mounts)
        table = {m.rstrip("/") or "/": folder for m, folder in mounts.items()}
        alternatives = "|".join(re.escape(m) for m in sorted(table, key=len, reverse=True))
        return re.sub(rf"(?<![\w./-])({alternatives})(?=/|$|[^\w.-])", lambda m: table[m.group(1)], value)

    return remap


def _runner_path_kept(original):
    """LocalRunner's container_env, except that the runner's own PATH and passed-through variables
    are not remapped: a pod mounting /work must not lose /work/main/.venv/bin from PATH."""

    def container_env(self, c: dict) -> dict[str, str]:
        env = original(self, c)
        if getattr(self.runner, "node_name", None) != CHART_RUNNER:
            return env
        declared = {e["name"] for e in c.get("env") or []}
        if "PATH" not in declared:
            env["PATH"] = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"
        for k in self.runner.pass_env:
            if k in os.environ and k not in declared:
                env[k] = os.environ[k]
        return env

    return container_env


@pytest.fixture(scope="module")
def chart_runner(control_plane):
    """A local-runner node of this module's own, `chart-runner`, rooted outside /tmp.

    Why not the session's `local_runner`, as is (reported to its owner; remove the two patches
    below once tests/cluster/local_runner.py has them):
    - PodWorker.remap() rewrites mount paths one after another, so a path already rewritten into
      <root>/pods/.../volumes/X is rewritten again when <root> is under /tmp (pytest's basetemp) and
      the container mounts /tmp (the chart's operator and the operator's worker pods both mount an
      emptyDir at /tmp for readOnlyRootFilesystem);
    - PodWorker.container_env() remaps every variable, the runner's own PATH included: worker pods
      mount an emptyDir at /work, so PATH's /work/main/.venv/bin became a volume folder and
      `nova-trainer` was not found.
    The patches apply only to pods of this runner's node."""
    mp = pytest.MonkeyPatch()
    mp.setattr(runner_module.PodWorker, "remap", _single_pass_remap(runner_module.PodWorker.remap))
    mp.setattr(runner_module.PodWorker, "container_env", _runner_path_kept(runner_module.PodWorker.container_env))
    root = Path(tempfile.mkdtemp(prefix="chart-runner-", dir=Path.home() / ".cache" / "nova"))
    assert not str(root).startswith("/tmp/")
    runner = LocalRunner(control_plane.kubeconfig, root, node_name=CHART_RUNNER,
                         pass_env=("PYTHONPATH", "LANG", "LC_ALL", "TZ", "NOVA_CACHE"))
    runner.start()
    try:
        control_plane.wait_nodes_ready([CHART_RUNNER], timeout=60)
        yield runner
    finally:
        runner.stop(delete_node=True)
        left = runner.alive_pids()
        for pid in left:
            try:
                os.killpg(pid, 9)
            except ProcessLookupError:
                pass
        shutil.rmtree(root, ignore_errors=True)
        mp.undo()
        assert not left, f"the chart runner left processes behind: {left}"


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
def _shim_outside_tmp() -> Path:
    """The local runner maps a pod's /tmp paths to its emptyDir, so a checkout under /tmp (as CI's
    may be) would hand the pod a shim path that is not there: copy the (stdlib-only) shim to the cache."""
    if not str(SHIM).startswith("/tmp/"):
        return SHIM
    cache = Path(os.environ.get("NOVA_CACHE") or Path.home() / ".cache" / "nova")
    target = cache / "chart-test" / SHIM.name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(SHIM.read_text())
    return target


def test_operator_from_the_chart_drives_a_run_to_succeeded(control_plane, chart_runner, helm_cli, api, pg_url,
                                                           kube_namespace, tmp_path):
    ns = kube_namespace
    restricted(control_plane, ns)
    core = k8s.CoreV1Api(api)
    core.create_namespaced_secret(ns, {"metadata": {"name": "optuna"},
                                       "stringData": {"url": pg_url}})
    health_port, metrics_port = free_port(), free_port()
    values = {
        "fullnameOverride": "nova",
        # only this namespace: other tests' runs are not ours
        "rbac": {"scope": "namespace", "clusterDiscovery": False},
        "storage": {"mode": "external", "existingSecret": {"name": "optuna", "key": "url"}},
        "operator": {
            "command": ["python", str(_shim_outside_tmp()), SA_DIR],
            "healthPort": health_port, "metrics": {"port": metrics_port},
            "statusInterval": 1,
            "nodeSelector": ON_CHART_RUNNER, "tolerations": [LOCAL_RUNNER_TOLERATION],
        },
    }
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    helm_cli("install", "nova", str(CHART), "--namespace", ns, "-f", str(values_file))

    apps = k8s.AppsV1Api(api)

    def operator_log() -> str:
        pods = core.list_namespaced_pod(ns, label_selector="app.kubernetes.io/component=operator").items
        if not pods:
            return "(no operator pod)"
        path = Path(chart_runner.log_path(ns, pods[0].metadata.name, "operator"))
        return path.read_text(errors="replace")[-6000:] if path.exists() else f"(no log at {path})"

    wait_for(lambda: (apps.read_namespaced_deployment("nova-operator", ns).status.ready_replicas or 0) == 1,
             "the operator Deployment ready on the chart runner", timeout=90, diagnose=operator_log)
    # kopf's liveness endpoint, the one the chart's probes use
    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/healthz", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    wait_for(healthy, "kopf's /healthz", timeout=240, diagnose=operator_log)
    assert "in-cluster config from" in operator_log()

    run = small_run_manifest("helm-e2e", symbols=("AAA",), trials=4, workers=2,
                             scheduling={"nodeSelector": ON_CHART_RUNNER,
                                         "tolerations": [LOCAL_RUNNER_TOLERATION]})
    custom = k8s.CustomObjectsApi(api)
    custom.create_namespaced_custom_object("nova.dev", "v1alpha1", ns, "trainingruns", run)

    def status() -> dict:
        return custom.get_namespaced_custom_object("nova.dev", "v1alpha1", ns, "trainingruns", "helm-e2e").get(
            "status") or {}

    def diagnose() -> str:
        pods = core.list_namespaced_pod(ns).items
        lines = [f"status: {json.dumps(status(), indent=1)[:3000]}", "operator log:", operator_log()]
        for p in pods:
            lines.append(f"pod {p.metadata.name}: {p.status.phase} on {p.spec.node_name}")
            for c in (p.spec.init_containers or []) + p.spec.containers:
                path = Path(chart_runner.log_path(ns, p.metadata.name, c.name))
                if path.exists():
                    lines.append(f"--- {c.name}:\n{path.read_text(errors='replace')[-1500:]}")
        return "\n".join(lines)

    def finished() -> bool:
        for p in core.list_namespaced_pod(ns).items:
            for c in (p.spec.init_containers or []) + p.spec.containers:
                path = Path(chart_runner.log_path(ns, p.metadata.name, c.name))
                if path.exists() and "[local-runner] could not start" in path.read_text(errors="replace"):
                    raise AssertionError(f"{p.metadata.name}/{c.name} could not start\n{diagnose()}")
        return status().get("phase") in ("Succeeded", "Failed")

    wait_for(finished, "the run to finish", timeout=420, diagnose=diagnose)
    final = status()
    assert final["phase"] == "Succeeded", diagnose()
    # Two workers may both start the last trial at the same instant: the documented bound is the
    # budget plus workers - 1 (see tuning/budget.py).
    done, budget = (int(x) for x in final["trials"].split("/"))
    assert budget == 4 and 4 <= done <= 4 + 1, json.dumps(final, indent=1)
    ready = next(c for c in final["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True", json.dumps(final, indent=1)
    assert final["observedGeneration"] == 1
    # the chart's default storage Secret reached the pods (the run named none)
    job = k8s.BatchV1Api(api).read_namespaced_job("helm-e2e-workers", ns)
    trainer = job.spec.template.spec.containers[0]
    assert any(e.value_from and e.value_from.secret_key_ref and e.value_from.secret_key_ref.name == "optuna"
               for e in trainer.env)
    assert trainer.image == "ghcr.io/nova-dev/nova-trainer:0.1.0"
    # the chart's metrics port (NOVA_METRICS_PORT) serves the operator's Prometheus metrics
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
        metrics = r.read().decode()
    assert 'nova_trainingruns{phase="Succeeded"} 1.0' in metrics, metrics
    assert f'nova_trials_finished{{namespace="{ns}",trainingrun="helm-e2e"}} {float(done)}' in metrics, metrics
    assert "nova_reconcile_duration_seconds_count" in metrics
    helm_cli("uninstall", "nova", "--namespace", ns, "--wait")
