"""The Argo CD health check of TrainingRun, run by a real Lua interpreter when one is installed
(`apt-get install lua5.4`; Argo CD itself embeds gopher-lua, Lua 5.1), and kstatus compatibility
of the status the CRD declares."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
HEALTH = ROOT / "deploy" / "argocd" / "health.lua"
LUA = next((shutil.which(n) for n in ("lua5.1", "luajit", "lua5.4", "lua5.3", "lua") if shutil.which(n)), None)


def lua_literal(value) -> str:
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid Lua for these values
    if isinstance(value, list):
        return "{" + ", ".join(lua_literal(v) for v in value) + "}"
    return "{" + ", ".join(f"[{json.dumps(k)}] = {lua_literal(v)}" for k, v in value.items()) + "}"


def health(obj: dict) -> tuple[str, str]:
    script = (f"obj = {lua_literal(obj)}\nlocal hs = dofile({json.dumps(str(HEALTH))})\n"
              "io.write(hs.status, '\\n', hs.message or '')")
    proc = subprocess.run([LUA, "-"], input=script, capture_output=True, text=True, timeout=10)
    assert proc.returncode == 0, proc.stderr
    status, _, message = proc.stdout.partition("\n")
    return status, message


def run(phase=None, generation=1, observed=1, **status):
    obj = {"apiVersion": "nova.dev/v1alpha1", "kind": "TrainingRun",
           "metadata": {"name": "q", "generation": generation}, "spec": {}}
    if phase is not None:
        obj["status"] = {"phase": phase, "observedGeneration": observed, **status}
    return obj


CASES = [
    (run(None), "Progressing", "Waiting for the Nova operator"),
    (run("Pending"), "Progressing", "Pending"),
    (run("Running", trials="3/8", bestValue=0.61), "Progressing", "Running (trials 3/8, best 0.61)"),
    (run("Refitting", message="refitting the best parameters"), "Progressing", "refitting the best parameters"),
    (run("Succeeded", trials="8/8"), "Healthy", "Succeeded (trials 8/8)"),
    (run("Failed", conditions=[{"type": "Ready", "status": "False", "reason": "StorageSecretMissing",
                                "message": "create secret optuna"}]),
     "Degraded", "StorageSecretMissing: create secret optuna"),
    (run("Failed", message="no bars for XYZ"), "Degraded", "no bars for XYZ"),
    (run("Suspended"), "Suspended", "Suspended (spec.suspend: true)"),
    (run("Succeeded", generation=3, observed=2), "Progressing", "The operator has not yet observed generation 3"),
]


@pytest.mark.skipif(LUA is None, reason="no Lua interpreter (apt-get install lua5.4); the structure is still tested")
@pytest.mark.parametrize("obj,status,message", CASES, ids=[f"{c[1]}-{i}" for i, c in enumerate(CASES)])
def test_health_check_runs(obj, status, message):
    assert health(obj) == (status, message)


def test_health_check_structure():
    text = HEALTH.read_text()
    assert text.rstrip().endswith("return hs")
    for status in ("Healthy", "Degraded", "Progressing", "Suspended"):
        assert f'hs.status = "{status}"' in text
    for phase in ("Succeeded", "Failed", "Suspended"):
        assert f'phase == "{phase}"' in text
    for newer in ("goto", "//", "<const>", "<close>"):  # Argo CD's gopher-lua is Lua 5.1
        assert newer not in text.replace("-- ", ""), newer


def test_argocd_cm_embeds_the_health_check_verbatim():
    cm = yaml.safe_load((ROOT / "deploy" / "argocd" / "argocd-cm.yaml").read_text())
    assert cm["metadata"]["name"] == "argocd-cm"
    assert cm["data"]["resource.customizations.health.nova.dev_TrainingRun"] == HEALTH.read_text()


def test_crd_status_is_kstatus_compatible():
    """kstatus (Flux, cli-utils, `kubectl wait --for=condition=Ready`) reads observedGeneration and a
    Ready condition with status/reason/message: the CRD's status schema has them."""
    crd = yaml.safe_load((ROOT / "crds" / "nova.dev_trainingruns.yaml").read_text())
    version = crd["spec"]["versions"][0]
    assert version["subresources"].get("status") == {}
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert status["observedGeneration"]["type"] == "integer"
    cond = status["conditions"]["items"]["properties"]
    assert {"type", "status", "reason", "message", "lastTransitionTime"} <= set(cond)
