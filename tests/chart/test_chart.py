"""The Helm chart, offline: `helm lint` and `helm template` with the default values and three other
value sets render the expected objects; bad values are refused by the schema naming the value;
the chart's CRD is the generated one; NOTES tell the next command; the values reference is current.

helm is the binary of the test control plane's build cache (built from helm.sh/helm/v3)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import yaml

from tests.chart.helm import CHART, ROOT, VALUES_DIR, env_of, helm_binary, pod_spec, run_helm, secret_value, template

VALUE_SETS = ["default", "namespace-scope", "external-db", "proxy-dashboard-monitoring"]


@pytest.fixture(scope="module")
def helm():
    return helm_binary()


def values_args(name: str) -> list[str]:
    return [] if name == "default" else ["-f", str(VALUES_DIR / f"{name}.yaml")]


# ------------------------------------------------------------------------------------------ CRD
def test_chart_crd_is_an_identical_copy_of_the_generated_crd():
    generated = ROOT / "crds" / "nova.dev_trainingruns.yaml"
    shipped = CHART / "crds" / "nova.dev_trainingruns.yaml"
    assert not shipped.is_symlink(), "helm package does not follow symlinks: ship a copy"
    assert shipped.read_bytes() == generated.read_bytes(), (
        "charts/nova/crds/nova.dev_trainingruns.yaml differs from crds/nova.dev_trainingruns.yaml: "
        "cp crds/nova.dev_trainingruns.yaml charts/nova/crds/")
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == sorted(p.name for p in (ROOT / "crds").glob("*.yaml"))


def test_template_with_include_crds_carries_the_crd(helm):
    out = template(helm, "--include-crds")
    crd = out.get("CustomResourceDefinition", "trainingruns.nova.dev")
    assert crd["spec"]["names"]["shortNames"] == ["tr"]


# --------------------------------------------------------------------------------- lint/template
@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_helm_lint_passes(helm, value_set):
    proc = run_helm(helm, "lint", "--strict", str(CHART), "--kube-version", "1.36.0", *values_args(value_set))
    assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_pod_meets_the_restricted_pod_security_standard(helm, value_set):
    out = template(helm, *values_args(value_set))
    workloads = out.all("Deployment") + out.all("StatefulSet")
    assert workloads
    for w in workloads:
        spec = pod_spec(w)
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["seccompProfile"]["type"] == "RuntimeDefault", w["metadata"]["name"]
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"], c["name"]
            assert sc["readOnlyRootFilesystem"] is True, c["name"]
            assert c.get("resources", {}).get("requests"), f"{c['name']} has no resource requests"
            assert c.get("readinessProbe") and c.get("livenessProbe"), f"{c['name']} has no probes"


def test_default_values_render_operator_rbac_and_postgresql(helm):
    out = template(helm)
    assert out.kinds() == {"ServiceAccount": 1, "ClusterRole": 2, "ClusterRoleBinding": 2, "Deployment": 1,
                           "Service": 2, "StatefulSet": 1, "Secret": 1, "NetworkPolicy": 2, "Role": 1,
                           "RoleBinding": 1, "PodDisruptionBudget": 1}, out.kinds()
    dep = out.get("Deployment", "r-nova-operator", "nova")
    # a leader and a standby (leader election on a Lease), rolled one at a time
    assert dep["spec"]["replicas"] == 2 and dep["spec"]["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    assert out.get("PodDisruptionBudget", "r-nova-operator")["spec"]["minAvailable"] == 1
    lease_rules = out.get("Role", "r-nova-operator-leader-election", "nova")["rules"]
    assert lease_rules == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["r-nova-operator"],
         "verbs": ["get", "update"]}]
    spec = pod_spec(dep)
    assert spec["serviceAccountName"] == "r-nova"
    (c,) = spec["containers"]
    assert c["image"] == "ghcr.io/nova-dev/nova-operator:0.1.0"
    assert "command" not in c, "the image's ENTRYPOINT (nova-operator) runs unless overridden"
    assert c["args"] == ["--liveness=http://0.0.0.0:8080/healthz", "--all-namespaces"]
    env = env_of(c)
    assert env["NOVA_LEADER_ELECT"] == "true" and env["NOVA_LEASE_NAME"] == "r-nova-operator"
    assert env["NOVA_TRAINER_IMAGE"] == "ghcr.io/nova-dev/nova-trainer:0.1.0"
    assert env["NOVA_DEFAULT_STORAGE_SECRET"] == "r-nova-postgresql/url"
    assert env["NOVA_METRICS_PORT"] == "9090"
    assert "NOVA_OPERATOR_STORAGE_URL" not in env
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"health": 8080, "metrics": 9090}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "health"}

    crb = out.get("ClusterRoleBinding", "r-nova-operator")
    assert crb["subjects"] == [{"kind": "ServiceAccount", "name": "r-nova", "namespace": "nova"}]
    assert crb["roleRef"]["name"] == "r-nova-operator"

    # PostgreSQL: a generated password in a Secret that survives uninstall, a PVC per replica
    secret = out.get("Secret", "r-nova-postgresql")
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    password = secret_value(secret, "password")
    assert len(password) == 32 and password.isalnum()
    assert secret_value(secret, "url") == f"postgresql://nova:{password}@r-nova-postgresql.nova.svc:5432/nova"
    sts = out.get("StatefulSet", "r-nova-postgresql")
    assert sts["spec"]["replicas"] == 1
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    pg = pod_spec(sts)["containers"][0]
    assert env_of(pg)["POSTGRES_PASSWORD"] == {"secretKeyRef": {"name": "r-nova-postgresql", "key": "password"}}
    assert out.get("Service", "r-nova-postgresql")["spec"]["ports"][0]["port"] == 5432

    # NetworkPolicies: PostgreSQL only from Nova's own pods
    np = out.get("NetworkPolicy", "r-nova-postgresql")
    peers = np["spec"]["ingress"][0]["from"]
    assert {"app.kubernetes.io/managed-by": "nova-operator"} in [p["podSelector"].get("matchLabels") for p in peers]
    assert np["spec"]["ingress"][0]["ports"] == [{"port": "postgresql"}]


def _rules(role: dict) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for res in rule["resources"]:
                out.setdefault((group, res), set()).update(rule["verbs"])
    return out


def test_rbac_is_least_privilege(helm):
    out = template(helm)
    rules = _rules(out.get("ClusterRole", "r-nova-operator"))
    assert rules == {
        ("nova.dev", "trainingruns"): {"get", "list", "watch", "create", "patch", "delete"},
        ("nova.dev", "trainingruns/status"): {"get", "patch", "update"},
        ("nova.dev", "trainingschedules"): {"get", "list", "watch"},
        ("nova.dev", "trainingschedules/status"): {"get", "patch"},
        ("nova.dev", "trainingruns/finalizers"): {"update"},
        ("batch", "jobs"): {"get", "create", "patch"},
        ("", "configmaps"): {"get", "create", "patch"},
        ("", "secrets"): {"get"},
        ("", "pods"): {"list", "watch"},
        ("", "events"): {"create", "patch"},
        ("events.k8s.io", "events"): {"create", "patch"},
        # Kueue: a queued Job's Workload (why it waits), spec.active (a user's suspend of a queued run)
        ("kueue.x-k8s.io", "workloads"): {"get", "list", "patch"},
    }
    for verbs in rules.values():
        assert "*" not in verbs
    discovery = _rules(out.get("ClusterRole", "r-nova-discovery"))
    assert discovery == {("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"}}
    # no kopf peering objects: the operator runs kopf standalone
    assert "kopf.dev" not in {g for g, _ in rules} | {g for g, _ in discovery}


def test_kueue_default_queue_reaches_the_operator_and_its_rbac_can_be_dropped(helm):
    default = template(helm)
    assert "NOVA_DEFAULT_QUEUE" not in env_of(pod_spec(default.get("Deployment", "r-nova-operator"))["containers"][0])
    out = template(helm, "--set", "kueue.defaultQueue=team-gpus", "--set", "kueue.rbac=false")
    assert env_of(pod_spec(out.get("Deployment", "r-nova-operator"))["containers"][0])["NOVA_DEFAULT_QUEUE"] == \
        "team-gpus"
    assert ("kueue.x-k8s.io", "workloads") not in _rules(out.get("ClusterRole", "r-nova-operator"))
    bad = run_helm(helm, "template", "r", str(CHART), "--set", "kueue.defaultQueue=Not_A_Queue", check=False)
    assert bad.returncode != 0 and "defaultQueue" in bad.stderr


def test_namespace_scope_renders_roles_in_the_watched_namespaces_only(helm):
    out = template(helm, *values_args("namespace-scope"))
    assert not out.has("ClusterRole", "r-nova-operator") and not out.has("ClusterRoleBinding", "r-nova-operator")
    for ns in ("team-a", "team-b"):
        role = out.get("Role", "r-nova-operator", ns)
        assert ("", "secrets") in _rules(role)
        binding = out.get("RoleBinding", "r-nova-operator", ns)
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "r-nova", "namespace": "nova"}]
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                      "name": "r-nova-operator"}
    assert len(out.all("Role")) == 3  # the two watched namespaces, and the Lease's in the release namespace
    assert _rules(out.get("ClusterRole", "r-nova-discovery")) == {
        ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"}, ("", "namespaces"): {"list", "watch"}}
    c = pod_spec(out.get("Deployment", "r-nova-operator"))["containers"][0]
    assert c["args"] == ["--liveness=http://0.0.0.0:8080/healthz", "--namespace=team-a", "--namespace=team-b",
                         "--verbose"]
    np = out.get("NetworkPolicy", "r-nova-postgresql")
    run_peer = np["spec"]["ingress"][0]["from"][-1]
    assert run_peer["namespaceSelector"]["matchExpressions"][0]["values"] == ["team-a", "team-b"]


def test_namespace_scope_defaults_to_the_release_namespace(helm):
    out = template(helm, "--set", "rbac.scope=namespace", "--set", "rbac.clusterDiscovery=false", namespace="ml")
    assert out.names("Role") == {"r-nova-operator", "r-nova-operator-leader-election"}
    assert out.get("Role", "r-nova-operator", "ml")
    assert "ClusterRole" not in out.kinds() and "ClusterRoleBinding" not in out.kinds()
    c = pod_spec(out.get("Deployment", "r-nova-operator"))["containers"][0]
    assert "--namespace=ml" in c["args"] and "--all-namespaces" not in c["args"]


def test_bring_your_own_database_secret(helm):
    out = template(helm, *values_args("external-db"))
    assert "StatefulSet" not in out.kinds() and "Secret" not in out.kinds()
    assert not out.has("NetworkPolicy", "r-nova-postgresql")
    env = env_of(pod_spec(out.get("Deployment", "r-nova-operator"))["containers"][0])
    assert env["NOVA_DEFAULT_STORAGE_SECRET"] == "my-db/uri"
    assert env["NOVA_OUTPUT_CLAIM"] == "r-nova-models"
    pvc = out.get("PersistentVolumeClaim", "r-nova-models")
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_storage_mode_none_sets_no_default(helm):
    out = template(helm, "--set", "storage.mode=none")
    env = env_of(pod_spec(out.get("Deployment", "r-nova-operator"))["containers"][0])
    assert "NOVA_DEFAULT_STORAGE_SECRET" not in env
    assert "StatefulSet" not in out.kinds()


def test_proxy_dashboard_and_service_monitor(helm):
    out = template(helm, *values_args("proxy-dashboard-monitoring"))
    proxy = out.get("Deployment", "r-nova-optuna-proxy")
    assert proxy["spec"]["replicas"] == 3
    pc = pod_spec(proxy)["containers"][0]
    assert pc["image"] == "ghcr.io/nova-dev/nova-trainer:0.1.0"
    assert pc["command"] == ["python", "/etc/nova-proxy/optuna_grpc_proxy.py"]
    assert env_of(pc)["NOVA_STORAGE_URL"] == {"secretKeyRef": {"name": "r-nova-postgresql", "key": "url"}}
    script = out.get("ConfigMap", "r-nova-optuna-proxy")["data"]["optuna_grpc_proxy.py"]
    assert script == (CHART / "files" / "optuna_grpc_proxy.py").read_text()
    assert secret_value(out.get("Secret", "r-nova-optuna-proxy"), "url") == "grpc://r-nova-optuna-proxy.nova.svc:13000"
    assert out.get("PodDisruptionBudget", "r-nova-optuna-proxy")["spec"]["minAvailable"] == 1

    # runs default to the proxy; the operator reads the database directly
    env = env_of(pod_spec(out.get("Deployment", "r-nova-operator"))["containers"][0])
    assert env["NOVA_DEFAULT_STORAGE_SECRET"] == "r-nova-optuna-proxy/url"
    assert env["NOVA_OPERATOR_STORAGE_URL"] == {"secretKeyRef": {"name": "r-nova-postgresql", "key": "url"}}

    dash = pod_spec(out.get("Deployment", "r-nova-dashboard"))["containers"][0]
    assert dash["image"] == "ghcr.io/optuna/optuna-dashboard:v0.21.0"
    assert dash["args"][0] == "$(OPTUNA_STORAGE)" and "OPTUNA_STORAGE" in env_of(dash)
    assert out.get("Service", "r-nova-dashboard")["spec"]["ports"][0]["port"] == 8080

    sm = out.get("ServiceMonitor", "r-nova-operator")
    assert sm["metadata"]["labels"]["release"] == "prometheus"
    assert sm["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "30s"}]
    svc = out.get("Service", "r-nova-operator-metrics")
    assert sm["spec"]["selector"]["matchLabels"] == {k: v for k, v in svc["metadata"]["labels"].items()
                                                      if k in sm["spec"]["selector"]["matchLabels"]}
    assert out.has("NetworkPolicy", "r-nova-optuna-proxy") and out.has("NetworkPolicy", "r-nova-dashboard")


def test_proxy_pdb_only_with_two_or_more_replicas(helm):
    out = template(helm, "--set", "optunaProxy.enabled=true", "--set", "optunaProxy.replicaCount=1")
    assert not out.has("PodDisruptionBudget", "r-nova-optuna-proxy")


def test_selectors_of_components_do_not_overlap(helm):
    out = template(helm, *values_args("proxy-dashboard-monitoring"))
    selectors = [tuple(sorted(w["spec"]["selector"]["matchLabels"].items()))
                 for w in out.all("Deployment") + out.all("StatefulSet")]
    assert len(set(selectors)) == len(selectors)


def test_without_leader_election_one_replica_recreated(helm):
    out = template(helm, "--set", "operator.replicaCount=1", "--set", "operator.leaderElection.enabled=false")
    dep = out.get("Deployment", "r-nova-operator")
    assert dep["spec"]["strategy"] == {"type": "Recreate"} and "NOVA_LEADER_ELECT" not in env_of(
        pod_spec(dep)["containers"][0])
    assert "PodDisruptionBudget" not in out.kinds() and "Role" not in out.kinds()


def test_operator_can_be_paused_with_zero_replicas(helm):
    out = template(helm, "--set", "operator.replicaCount=0")
    assert out.get("Deployment", "r-nova-operator")["spec"]["replicas"] == 0


def render_notes(helm, tmp_path, *args: str) -> str:
    """NOTES.txt rendered offline (`helm install --dry-run` needs a cluster): a copy of the chart
    that renders it through tpl into a ConfigMap."""
    chart = tmp_path / "nova"
    shutil.copytree(CHART, chart)
    shutil.copy(CHART / "templates" / "NOTES.txt", chart / "notes.txt")
    (chart / "templates" / "zz-notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\ndata:\n  notes: |\n"
        "    {{- tpl (.Files.Get \"notes.txt\") . | nindent 4 }}\n")
    proc = run_helm(helm, "template", "r", str(chart), "--namespace", "nova", "--kube-version", "1.36.0",
                    "--show-only", "templates/zz-notes.yaml", *args)
    return yaml.safe_load(proc.stdout)["data"]["notes"]


def test_notes_tell_the_next_command(helm, tmp_path):
    notes = render_notes(helm, tmp_path)
    assert "kubectl -n nova apply -f examples/quickstart.yaml" in notes
    assert "kubectl -n nova get tr -w" in notes
    assert "rollout status deployment/r-nova-operator" in notes


def test_notes_warn_when_the_external_storage_secret_is_missing(helm, tmp_path):
    """Offline, `lookup` finds nothing, as on a cluster without the Secret: the notes say what to create."""
    notes = render_notes(helm, tmp_path, "--set", "storage.mode=external", "--set", "storage.existingSecret.name=db")
    assert "WARNING: the Secret db was not found in namespace nova" in notes
    assert "kubectl -n nova create secret generic db --from-literal=url=" in notes
    assert "WARNING" not in render_notes(helm, tmp_path / "default")  # the chart's own PostgreSQL: no warning


# ---------------------------------------------------------------------------------- bad values
BAD_VALUES = [
    (["--set", "operator.replicaCount=-1"], "/operator/replicaCount", "minimum"),
    (["--set", "operator.replicaCount=2", "--set", "operator.leaderElection.enabled=false"],
     "/operator/replicaCount", "maximum"),
    (["--set", "storage.mode=sqlite"], "/storage/mode", "postgresql"),
    (["--set", "storage.mode=external"], "/storage/existingSecret/name", "minLength"),
    (["--set", "storage.mode=external", "--set", "storage.existingSecret.name=Bad_Name"],
     "/storage/existingSecret/name", "does not match"),
    (["--set", "rbac.scope=everywhere"], "/rbac/scope", "cluster"),
    (["--set", "optunaProxy.replicaCount=0"], "/optunaProxy/replicaCount", "minimum"),
    (["--set", "storage.mode=none", "--set", "optunaProxy.enabled=true"], "/storage/mode", "external"),
    (["--set", "operater.replicaCount=1"], "operater", "additional"),
    (["--set-json", "image.operator.tag=1.0"], "/image/operator/tag", "string"),
    (["--set", "postgresql.persistence.size=lots"], "/postgresql/persistence/size", "does not match"),
]


@pytest.mark.parametrize("args,path,why", BAD_VALUES, ids=[" ".join(a[1::2]) for a, _, _ in BAD_VALUES])
def test_bad_values_are_refused_naming_the_value(helm, args, path, why):
    proc = run_helm(helm, "template", "r", str(CHART), "--kube-version", "1.36.0", *args, check=False)
    assert proc.returncode != 0, f"accepted: {args}"
    assert "values don't meet the specifications of the schema" in proc.stderr
    assert path in proc.stderr and why in proc.stderr, proc.stderr


def test_lint_refuses_bad_values_too(helm):
    proc = run_helm(helm, "lint", str(CHART), "--kube-version", "1.36.0", "--set", "operator.replicaCount=-1",
                    check=False)
    assert proc.returncode != 0 and "/operator/replicaCount" in proc.stdout + proc.stderr


# --------------------------------------------------------------------------- values reference
def test_values_reference_in_docs_is_current():
    proc = subprocess.run([sys.executable, str(CHART / "gen_values_doc.py"), "--check"], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr


def test_every_value_is_described_by_the_schema():
    """values.yaml and values.schema.json describe the same keys (additionalProperties: false
    refuses unknown ones, so a key missing from the schema would make the defaults invalid)."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(node, sch, path):
        for key, value in node.items():
            props = sch.get("properties", {})
            assert key in props, f"{'.'.join([*path, key])} is not in values.schema.json"
            assert props[key].get("description") or props[key].get("properties"), f"{key} has no description"
            if isinstance(value, dict) and props[key].get("properties"):
                walk(value, props[key], [*path, key])

    walk(values, schema, [])
