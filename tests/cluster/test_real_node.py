"""Real pods on the real node (kubelet + containerd + runc, tests/cluster/node.py) from Nova's own
images: exit codes and logs from real containers, and the chart's operator in a pod under the
chart's own securityContext (non-root, read-only root, capabilities dropped, RuntimeDefault
seccomp) in a namespace that enforces the restricted Pod Security Standard, probed by kubelet on
/healthz, reaching the API server through the `kubernetes` Service as in any cluster, and driving a
TrainingRun to Succeeded in real worker and refit pods of the trainer image; the quickstart through
`kubectl apply -f` with its model on a claim; the operator's container killed and a worker pod
deleted mid-run (reliability)."""

from __future__ import annotations

import json
import urllib.request
from urllib.parse import urlsplit, urlunsplit

import pytest
import yaml
from kubernetes import client as k8s

from tests.chart.helm import CHART
from tests.cluster.fixtures import REAL_NODE_SELECTOR, REAL_NODE_TOLERATION
from tests.cluster.node import cri_log_text
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
                     "tolerations": [REAL_NODE_TOLERATION],
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


def test_cri_log_lines_are_read_back_as_written():
    raw = ("2026-12-03T10:00:00.1Z stdout F sidecar up\n2026-12-03T10:00:00.2Z stderr P half \n"
           "2026-12-03T10:00:00.3Z stderr F a line\n2026-12-03T10:00:00.4Z stdout F \n")
    assert cri_log_text(raw) == "sidecar up\nhalf a line\n\n"


def test_native_sidecar_starts_first_and_stops_after_the_main_container(control_plane, real_node, core,
                                                                         kube_namespace):
    """What the worker pods rely on, from the real kubelet: an init container with
    restartPolicy Always (prep) starts before the main container (trainer), shares its emptyDir,
    and is stopped with SIGTERM once the main container has ended; the pod then Succeeds."""
    ns, image = kube_namespace, real_node.images.trainer
    work = [{"name": "work", "mountPath": "/work/features"}]

    def container(name: str, code: str, *args: str, **extra) -> dict:
        return {"name": name, "image": image, "imagePullPolicy": "Never", "command": ["python", "-c", code, *args],
                "securityContext": RESTRICTED, **extra}

    sidecar = container("prep", "import signal, sys, time, pathlib\n"
                                "def bye(*_):\n    print('sidecar got SIGTERM', flush=True); sys.exit(0)\n"
                                "signal.signal(signal.SIGTERM, bye)\n"
                                "pathlib.Path(sys.argv[1]).write_text('ready')\n"
                                "print('sidecar up', flush=True)\n"
                                "while True: time.sleep(0.1)\n", "/work/features/ready",
                        restartPolicy="Always", volumeMounts=work)
    # as kubelet does, the main container starts once the sidecar has started (no startupProbe),
    # not once it is ready: it waits for the file
    main = container("trainer", "import sys, time, pathlib\np = pathlib.Path(sys.argv[1])\n"
                                "for _ in range(1200):\n    if p.exists(): break\n    time.sleep(0.05)\n"
                                "print(p.read_text())", "/work/features/ready", volumeMounts=work)
    body = pod("sidecar", image, [])
    body["spec"].update({"terminationGracePeriodSeconds": 10, "containers": [main],
                         "initContainers": [container("setup", "print('init done')"), sidecar],
                         "volumes": [{"name": "work", "emptyDir": {}}]})
    core.create_namespaced_pod(ns, body)
    done = wait_for(lambda: (p := core.read_namespaced_pod("sidecar", ns)).status.phase in ("Succeeded", "Failed")
                    and p, "the sidecar pod to finish", timeout=240, diagnose=real_node.diagnose)
    assert done.status.phase == "Succeeded", done.status
    assert real_node.pod_log(ns, "sidecar", "setup") == "init done\n"
    # the main container read what the sidecar wrote: it ran after the sidecar was up, in the same emptyDir
    assert real_node.pod_log(ns, "sidecar", "trainer") == "ready\n"
    assert real_node.pod_log(ns, "sidecar", "prep") == "sidecar up\nsidecar got SIGTERM\n"
    inits = {s.name: s for s in done.status.init_container_statuses}
    main_done = done.status.container_statuses[0].state.terminated
    side_done = inits["prep"].state.terminated
    # the sidecar was stopped (SIGTERM, which it handled with exit 0) after the main container ended
    assert side_done.exit_code == 0 and side_done.finished_at >= main_done.finished_at
    assert inits["setup"].state.terminated.exit_code == 0
    assert inits["setup"].state.terminated.finished_at <= main_done.started_at


class ChartOnNode:
    """charts/nova installed with the images built here, its operator and runs on the real node."""

    def __init__(self, control_plane, real_node, core, pg_url: str, ns: str, tmp_path,
                 output_claim: str = "") -> None:
        self.cp, self.node, self.core, self.ns = control_plane, real_node, core, ns
        restricted(control_plane, ns)
        # the pods reach the test PostgreSQL (loopback) through a forwarder on the bridge address
        url = urlsplit(pg_url)
        netloc = f"{url.username}:{url.password}@{real_node.host_ip}:{real_node.forward(url.port)}"
        core.create_namespaced_secret(ns, {"metadata": {"name": "optuna"},
                                           "stringData": {"url": urlunsplit(url._replace(netloc=netloc))}})
        self.images = real_node.images

        def image(ref: str) -> dict:
            repository, tag = ref.rsplit(":", 1)
            return {"repository": repository, "tag": tag, "pullPolicy": "Never"}

        values = {
            "fullnameOverride": "nova",
            "image": {"operator": image(self.images.operator), "trainer": image(self.images.trainer)},
            "rbac": {"scope": "namespace", "clusterDiscovery": False},
            "storage": {"mode": "external", "existingSecret": {"name": "optuna", "key": "url"}},
            "operator": {"replicaCount": 1, "statusInterval": 2, "nodeSelector": REAL_NODE_SELECTOR,
                         "tolerations": [REAL_NODE_TOLERATION]},
            "output": {"claimName": output_claim},
        }
        values_file = tmp_path / "values.yaml"
        values_file.write_text(yaml.safe_dump(values))
        control_plane.helm("install", "nova", str(CHART), "--namespace", ns, "-f", str(values_file), timeout=300)
        self.custom = k8s.CustomObjectsApi(control_plane.api_client())

    def operator_pod(self):
        pods = self.core.list_namespaced_pod(self.ns, label_selector="app.kubernetes.io/component=operator").items
        return pods[0] if pods else None

    def operator_log(self) -> str:
        p = self.operator_pod()
        return self.node.pod_log(self.ns, p.metadata.name, "operator")[-6000:] if p else "(no operator pod)"

    def diagnose(self) -> str:
        events = [f"{e.involved_object.name}: {e.reason} {e.message}"
                  for e in self.core.list_namespaced_event(self.ns).items]
        lines = [f"operator log:\n{self.operator_log()}", "events:", *events[-30:]]
        for p in self.core.list_namespaced_pod(self.ns).items:
            lines.append(f"pod {p.metadata.name}: {p.status.phase}")
            for c in (p.spec.init_containers or []) + p.spec.containers:
                lines.append(f"--- {c.name}:\n{self.node.pod_log(self.ns, p.metadata.name, c.name)[-1500:]}")
        return "\n".join(lines) + "\n" + self.node.diagnose()

    def operator_ready(self):
        return wait_for(lambda: (p := self.operator_pod()) and p.status.container_statuses and
                        p.status.container_statuses[0].ready and p, "the operator pod Ready (kubelet's probes)",
                        timeout=300, diagnose=self.diagnose)

    def start_run(self, name: str, trials: int = 4) -> None:
        run = small_run_manifest(name, symbols=("AAA",), trials=trials, workers=2,
                                 scheduling={"nodeSelector": REAL_NODE_SELECTOR,
                                             "tolerations": [REAL_NODE_TOLERATION]})
        run["spec"]["resources"] = {"trainer": {"requests": {"cpu": "100m", "memory": "256Mi"}},
                                    "prep": {"requests": {"cpu": "50m", "memory": "128Mi"}}}
        self.custom.create_namespaced_custom_object("nova.dev", "v1alpha1", self.ns, "trainingruns", run)

    def status(self, name: str) -> dict:
        return self.custom.get_namespaced_custom_object("nova.dev", "v1alpha1", self.ns, "trainingruns",
                                                        name).get("status") or {}

    def finished(self, name: str) -> dict:
        wait_for(lambda: self.status(name).get("phase") in ("Succeeded", "Failed"),
                 "the run to finish in real pods", timeout=600, diagnose=self.diagnose, interval=2)
        final = self.status(name)
        assert final["phase"] == "Succeeded", f"{json.dumps(final, indent=1)[:3000]}\n{self.diagnose()}"
        return final

    def uninstall(self) -> None:
        self.cp.helm("uninstall", "nova", "--namespace", self.ns, "--wait", timeout=300)


def test_chart_operator_in_a_real_pod_serves_healthz_and_drives_a_run(control_plane, real_node, core, pg_url,
                                                                      kube_namespace, tmp_path):
    chart = ChartOnNode(control_plane, real_node, core, pg_url, kube_namespace, tmp_path)
    ready = chart.operator_ready()
    container = ready.spec.containers[0]
    assert container.image == chart.images.operator and container.security_context.read_only_root_filesystem
    assert ready.spec.node_name == real_node.name
    port = next(p.container_port for p in container.ports if p.name == "health")
    with urllib.request.urlopen(f"http://{ready.status.pod_ip}:{port}/healthz", timeout=10) as r:
        assert r.status == 200

    chart.start_run("real-pods")
    final = chart.finished("real-pods")
    done, budget = (int(x) for x in final["trials"].split("/"))
    assert budget == 4 and 4 <= done <= 5
    workers = core.list_namespaced_pod(kube_namespace, label_selector="job-name=real-pods-workers").items
    assert workers and all(p.spec.node_name == real_node.name for p in workers)
    assert all(c.image == chart.images.trainer for p in workers for c in p.spec.containers)
    # the run named no storage: the chart's storage Secret reached the pods
    trainer = workers[0].spec.containers[0]
    assert any(e.value_from and e.value_from.secret_key_ref and e.value_from.secret_key_ref.name == "optuna"
               for e in trainer.env)
    # the operator used the pod's own ServiceAccount (in-cluster config), and its metrics port
    # (NOVA_METRICS_PORT) serves the run's numbers
    assert container.env and not any(e.name == "KUBECONFIG" for e in container.env)
    metrics_port = next(p.container_port for p in container.ports if p.name == "metrics")
    with urllib.request.urlopen(f"http://{ready.status.pod_ip}:{metrics_port}/metrics", timeout=10) as r:
        metrics = r.read().decode()
    assert 'nova_trainingruns{phase="Succeeded"} 1.0' in metrics, metrics[-3000:]
    assert f'nova_trials_finished{{namespace="{kube_namespace}",trainingrun="real-pods"}} {float(done)}' in metrics
    chart.uninstall()


@pytest.mark.reliability
def test_operator_killed_and_worker_pod_deleted_mid_run_still_succeeds(control_plane, real_node, core, pg_url,
                                                                       kube_namespace, tmp_path):
    """Real faults: the operator's container SIGKILLed in containerd (kubelet restarts it, as after
    an OOM kill) and a worker pod deleted (its Job makes another) while trials run."""
    ns = kube_namespace
    chart = ChartOnNode(control_plane, real_node, core, pg_url, ns, tmp_path)
    before = chart.operator_ready()
    chart.start_run("faults", trials=6)
    wait_for(lambda: [p for p in core.list_namespaced_pod(ns, label_selector="job-name=faults-workers").items
                      if p.status.phase == "Running"], "a running worker pod", timeout=300, diagnose=chart.diagnose)
    cid = before.status.container_statuses[0].container_id.removeprefix("containerd://")
    real_node.runtime.containerd.ctr("tasks", "kill", "--signal", "SIGKILL", cid)
    victim = core.list_namespaced_pod(ns, label_selector="job-name=faults-workers").items[0]
    core.delete_namespaced_pod(victim.metadata.name, ns, grace_period_seconds=0)

    restarted = wait_for(lambda: (p := chart.operator_pod()) and p.status.container_statuses[0].restart_count >= 1
                         and p.status.container_statuses[0].ready and p, "the operator restarted by kubelet",
                         timeout=300, diagnose=chart.diagnose)
    assert restarted.metadata.uid == before.metadata.uid, "the same pod: its container was restarted"
    final = chart.finished("faults")
    done, budget = (int(x) for x in final["trials"].split("/"))
    assert budget == 6 and 6 <= done <= 7
    chart.uninstall()


def test_quickstart_applied_with_kubectl_runs_prep_and_trainer_in_real_pods(control_plane, real_node, core, pg_url,
                                                                            kube_namespace, tmp_path):
    """examples/quickstart.yaml (shrunk to seconds as tests/operator/test_e2e.py does) through
    `kubectl apply -f`: the `prep` native sidecar and the `trainer` container of each worker pod run
    in real containers of the trainer image, and the refit's model file, on a claim, is a real
    XGBoost model."""
    import xgboost

    from tests.operator.e2e import tiny_quickstart

    ns = kube_namespace
    # the models on a claim, as a user's cluster has them: kubelet removes a finished pod's emptyDir.
    # No provisioner here: a static hostPath PersistentVolume on the node, bound to the claim.
    models = real_node.work / f"models-{ns}"
    models.mkdir()
    models.chmod(0o777)  # the refit runs as uid 1000; fsGroup does not apply to hostPath
    control_plane.apply([
        {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"models-{ns}"},
         "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "",
                  "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": str(models), "type": "Directory"},
                  "claimRef": {"namespace": ns, "name": "models"}}},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "models", "namespace": ns},
         "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "", "volumeName": f"models-{ns}",
                  "resources": {"requests": {"storage": "1Gi"}}}}])
    chart = ChartOnNode(control_plane, real_node, core, pg_url, ns, tmp_path, output_claim="models")
    chart.operator_ready()
    run = tiny_quickstart("quick", trials=4, workers=2)
    manifest = tmp_path / "quickstart.yaml"
    manifest.write_text(yaml.safe_dump(run))
    control_plane.kubectl("-n", ns, "apply", "-f", str(manifest))
    final = chart.finished("quick")

    pods = core.list_namespaced_pod(ns, label_selector="job-name=quick-workers").items
    assert len({p.metadata.annotations["batch.kubernetes.io/job-completion-index"] for p in pods}) == 2
    for p in pods:
        if p.status.phase != "Succeeded":
            continue
        prep = p.spec.init_containers[0]
        assert prep.name == "prep" and prep.restart_policy == "Always", "prep is a native sidecar"
        assert p.status.container_statuses[0].state.terminated.exit_code == 0
        assert real_node.pod_log(ns, p.metadata.name, "prep"), "the prep sidecar left no log"
        assert "AAA: worker" in real_node.pod_log(ns, p.metadata.name, "trainer")
    model = final["model"]["symbols"][0]
    assert final["model"]["uri"] == f"/output/{ns}/quick"
    files = list(models.rglob(model["file"]))
    assert files, f"no {model['file']} on the claim: {list(models.rglob('*'))}"
    assert xgboost.Booster(model_file=str(files[0])).num_boosted_rounds() > 0
    chart.uninstall()
    control_plane.kubectl("delete", "pv", f"models-{ns}", "--wait=false", check=False)
