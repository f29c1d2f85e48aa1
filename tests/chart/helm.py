"""Helpers of the chart tests: the helm binary of the test control plane's build cache, rendering."""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster import controlplane

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "nova"
VALUES_DIR = Path(__file__).resolve().parent / "values"
KUBE_VERSION = "1.36.0"  # the chart's kubeVersion needs >= 1.29; helm template defaults to 1.20


def helm_binary() -> Path:
    """helm from the control plane's build cache (built from helm.sh/helm/v3 with the rest);
    built now if missing; skipped only when there is no Go toolchain to build it."""
    helm = controlplane.bin_dir() / "helm"
    if helm.exists():
        return helm
    if controlplane.go_toolchain() is None:
        pytest.skip("helm is built from the Go module helm.sh/helm/v3 by tests/cluster/build.sh and no Go "
                    "toolchain (go >= 1.26) was found; install Go or set GO=/path/to/go")
    go = controlplane.go_toolchain()
    env = {**os.environ, "GO": go, "PATH": f"{Path(go).parent}:{os.environ.get('PATH', '')}"}
    # build.sh is a no-op for the binaries already built, so this builds helm (and whatever is missing)
    proc = subprocess.run(["bash", str(controlplane.BUILD_SCRIPT)], env=env, capture_output=True, text=True)
    if proc.returncode != 0 or not helm.exists():
        raise AssertionError(f"tests/cluster/build.sh did not produce {helm}:\n"
                             f"{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return helm


def run_helm(helm: Path, *args: str, check: bool = True, env: dict[str, str] | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(helm), *args], capture_output=True, text=True, env=env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


class Rendered:
    """The objects of one `helm template`, by (kind, name[, namespace])."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.objects = [d for d in yaml.safe_load_all(text) if d]

    def kinds(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for o in self.objects:
            out[o["kind"]] = out.get(o["kind"], 0) + 1
        return out

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def names(self, kind: str) -> set[str]:
        return {o["metadata"]["name"] for o in self.all(kind)}

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        found = [o for o in self.all(kind) if o["metadata"]["name"] == name
                 and (namespace is None or o["metadata"].get("namespace") == namespace)]
        assert len(found) == 1, f"expected one {kind} {name} (ns {namespace}), found {len(found)}: {self.kinds()}"
        return found[0]

    def has(self, kind: str, name: str) -> bool:
        return name in self.names(kind)


def template(helm: Path, *extra: str, release: str = "r", namespace: str = "nova") -> Rendered:
    proc = run_helm(helm, "template", release, str(CHART), "--namespace", namespace,
                    "--kube-version", KUBE_VERSION, *extra)
    return Rendered(proc.stdout)


def secret_value(secret: dict[str, Any], key: str) -> str:
    if key in (secret.get("stringData") or {}):
        return secret["stringData"][key]
    return base64.b64decode(secret["data"][key]).decode()


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    """name -> value (str) or valueFrom (dict)."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env") or []}


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]
