"""The operator image installs `nova[operator]` and nothing else, while the development venv has
every extra: an import the extra does not satisfy passes every other test and crash-loops the real
pod (it did: `No module named 'grpc'`). Here the operator's runtime (tests/support/operator_runtime.py)
runs with every module outside the extra's requirement closure refused."""

from __future__ import annotations

import importlib.metadata as md
import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "tests" / "support" / "operator_runtime.py"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(dist: str, extras: set[str]) -> set[str]:
    """Canonical names of `dist` and every distribution its requirements (with `extras`) pull in,
    read from the installed metadata; a requirement that is not installed is an error."""
    seen: set[tuple[str, frozenset[str]]] = set()
    names: set[str] = set()
    todo = [(dist, frozenset(extras))]
    while todo:
        name, wanted = todo.pop()
        if (canonical(name), wanted) in seen:
            continue
        seen.add((canonical(name), wanted))
        names.add(canonical(name))
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            raise AssertionError(f"{name} is required but not installed in this venv (run dev/bootstrap)") from None
        for text in requires:
            req = Requirement(text)
            envs = [{"extra": e} for e in wanted] or [{"extra": ""}]
            if req.marker is None or any(req.marker.evaluate(env) for env in envs):
                todo.append((req.name, frozenset(req.extras)))
    return names


def modules_of(dists: set[str]) -> set[str]:
    """Top-level importable names that these distributions install."""
    return {module for module, owners in md.packages_distributions().items()
            if any(canonical(o) in dists for o in owners)}


def run_runtime(allowed: set[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(RUNTIME), "--only", ",".join(sorted(allowed))], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{ROOT}:{ROOT / 'operator'}"})


@pytest.fixture(scope="module")
def operator_dists() -> set[str]:
    return closure("nova", {"operator"})


def test_the_operator_extra_satisfies_every_runtime_import(operator_dists):
    assert "xgboost" not in operator_dists and "nova" in operator_dists
    result = run_runtime(modules_of(operator_dists))
    assert result.returncode == 0, (
        "the operator needs a module that the `operator` extra in pyproject.toml does not install; add its "
        f"distribution there:\n{result.stderr[-3000:]}")
    assert result.stdout.startswith("ok: ")


@pytest.mark.parametrize("dropped, module", [("grpcio", "grpc"), ("psycopg-binary", "psycopg_binary"),
                                             ("croniter", "croniter")])
def test_a_distribution_missing_from_the_extra_fails_the_check(operator_dists, dropped, module):
    assert dropped in operator_dists, f"{dropped} is not in the operator extra's closure"
    result = run_runtime(modules_of(operator_dists - {dropped}))
    assert result.returncode != 0
    missing = f"No module named {module!r}" in result.stderr or "psycopg has no libpq" in result.stderr
    assert missing, result.stderr[-2000:]
