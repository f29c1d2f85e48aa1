"""The operator's RBAC from the Helm chart, checked on the real API server with
`kubectl auth can-i --as=system:serviceaccount:<ns>:<sa>`: it allows what the operator uses
(`operator/nova_operator/kube.py`, kopf's watches, events and status patches) and denies what it
must never do (read every Secret, write Secrets, exec into pods, create pods directly, escalate
RBAC, touch nodes). The chart is rendered with the harness's `helm`; the test skips until
`charts/nova` exists (set NOVA_CHART to check another chart)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from tests.cluster import kueue as kueue_harness

pytestmark = [pytest.mark.reliability, pytest.mark.cluster]
ROOT = Path(__file__).resolve().parents[2]
CHART = Path(os.environ.get("NOVA_CHART") or ROOT / "charts" / "nova")
RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}

# (verb, resource) the operator needs in a run's namespace
ALLOWED = [
    ("get", "trainingruns.nova.dev"), ("list", "trainingruns.nova.dev"), ("watch", "trainingruns.nova.dev"),
    ("patch", "trainingruns.nova.dev"), ("patch", "trainingruns.nova.dev/status"),
    ("delete", "trainingruns.nova.dev"),  # ttlSecondsAfterFinished, a schedule's history limits
    ("create", "trainingruns.nova.dev"),  # a TrainingSchedule's runs
    ("get", "trainingschedules.nova.dev"), ("list", "trainingschedules.nova.dev"),
    ("watch", "trainingschedules.nova.dev"),
    ("create", "jobs.batch"), ("get", "jobs.batch"), ("patch", "jobs.batch"),
    ("create", "configmaps"), ("get", "configmaps"), ("patch", "configmaps"),
    ("get", "secrets"),  # reads the named storage Secret to check it before any pod starts
    ("list", "pods"), ("watch", "pods"),  # the refit pod's termination message, failed pods' messages
    ("create", "events"),
    # Kueue: a queued Job's Workload (why it waits), spec.active (a user's suspend of a queued Job)
    ("get", "workloads.kueue.x-k8s.io"), ("list", "workloads.kueue.x-k8s.io"), ("patch", "workloads.kueue.x-k8s.io"),
]
DENIED = [
    ("list", "secrets"), ("watch", "secrets"), ("create", "secrets"), ("update", "secrets"),
    ("delete", "secrets"), ("create", "pods/exec"), ("create", "pods"), ("create", "pods/portforward"),
    ("create", "clusterroles.rbac.authorization.k8s.io"), ("bind", "clusterroles.rbac.authorization.k8s.io"),
    ("escalate", "roles.rbac.authorization.k8s.io"), ("create", "rolebindings.rbac.authorization.k8s.io"),
    ("delete", "nodes"), ("patch", "nodes"), ("create", "serviceaccounts/token"),
    ("impersonate", "serviceaccounts"), ("delete", "customresourcedefinitions.apiextensions.k8s.io"),
    ("delete", "workloads.kueue.x-k8s.io"), ("patch", "clusterqueues.kueue.x-k8s.io"),
    ("create", "localqueues.kueue.x-k8s.io"),
    ("*", "*"),
]


def _render(control_plane, namespace: str, scope: str) -> list[dict]:
    if not (CHART / "Chart.yaml").exists():
        pytest.skip(f"no Helm chart at {CHART} yet (charts/nova is being written)")
    helm = control_plane.bin_dir / "helm"
    import subprocess

    from tests.cluster.controlplane import versions

    out = subprocess.run([str(helm), "template", "nova", str(CHART), "--namespace", namespace,
                          "--kube-version", versions()["K8S_VERSION"], "--set", f"rbac.scope={scope}"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d and d.get("kind") in RBAC_KINDS]


@pytest.mark.parametrize("scope", ["cluster", "namespace"])
def test_operator_rbac_allows_what_it_uses_and_nothing_dangerous(control_plane, crd_api, kube_namespace, scope):
    """cluster scope: the operator may do its work in any namespace; namespace scope: in its own
    namespace only, and nothing at all in another one."""
    system_ns = kube_namespace
    other_ns = f"{system_ns}-runs"
    objects = _render(control_plane, system_ns, scope)
    # `kubectl auth can-i` resolves workloads.kueue.x-k8s.io only where the API serves it
    kueue_harness.ensure_built()
    kueue_harness.apply_crds(control_plane)
    bindings = [o for o in objects if o["kind"] in ("ClusterRoleBinding", "RoleBinding")]
    subjects = {(s.get("namespace", system_ns), s["name"]) for b in bindings for s in b.get("subjects", [])
                if s["kind"] == "ServiceAccount"}
    assert subjects, f"the chart binds no ServiceAccount: {[o['kind'] for o in objects]}"
    for o in objects:
        if o["kind"] in ("ServiceAccount", "Role", "RoleBinding"):
            o.setdefault("metadata", {})["namespace"] = o["metadata"].get("namespace", system_ns)
    control_plane.apply(objects)
    control_plane.kubectl("create", "namespace", other_ns)
    try:
        expect = {(system_ns, v, r): (v, r) in ALLOWED for v, r in ALLOWED + DENIED}
        expect |= {(other_ns, v, r): scope == "cluster" and (v, r) in ALLOWED for v, r in ALLOWED + DENIED}
        wrong = []
        for ns, sa in subjects:
            who = f"system:serviceaccount:{ns}:{sa}"
            for (run_ns, verb, resource), allowed in expect.items():
                got = control_plane.kubectl("auth", "can-i", verb, resource, f"--as={who}", "-n", run_ns,
                                            check=False).stdout.strip()
                if got != ("yes" if allowed else "no"):
                    wrong.append(f"{who} {verb} {resource} in {run_ns}: {got}")
        # leader election: its own Lease in the release namespace, and no other
        lease = {(system_ns, "create", "leases.coordination.k8s.io"): True,
                 (system_ns, "get", "leases.coordination.k8s.io/nova-operator"): True,
                 (system_ns, "update", "leases.coordination.k8s.io/nova-operator"): True,
                 (system_ns, "update", "leases.coordination.k8s.io/kube-scheduler"): False,
                 (system_ns, "delete", "leases.coordination.k8s.io/nova-operator"): False,
                 (other_ns, "create", "leases.coordination.k8s.io"): False}
        for ns, sa in subjects:  # a subresource needs --subresource (`X/status` would name an object "status")
            who = f"system:serviceaccount:{ns}:{sa}"
            got = control_plane.kubectl("auth", "can-i", "patch", "trainingschedules.nova.dev", "--subresource=status",
                                        f"--as={who}", "-n", system_ns, check=False).stdout.strip()
            if got != "yes":
                wrong.append(f"{who} patch trainingschedules.nova.dev --subresource=status: {got}")
        for ns, sa in subjects:
            who = f"system:serviceaccount:{ns}:{sa}"
            for (run_ns, verb, resource), allowed in lease.items():
                got = control_plane.kubectl("auth", "can-i", verb, resource, f"--as={who}", "-n", run_ns,
                                            check=False).stdout.strip()
                if got != ("yes" if allowed else "no"):
                    wrong.append(f"{who} {verb} {resource} in {run_ns}: {got}")
        assert not wrong, "\n".join(wrong)
    finally:
        control_plane.kubectl("delete", "namespace", other_ns, "--wait=false", check=False)
        for o in objects:
            if o["kind"].startswith("Cluster"):
                control_plane.kubectl("delete", o["kind"].lower(), o["metadata"]["name"], "--ignore-not-found",
                                      check=False)
