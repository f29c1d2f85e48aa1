"""The two Dockerfiles, without an engine: each entrypoint is a console script of the installed
package, the image names and versions agree with the chart and pyproject, the operator image has no
xgboost, both run as the non-root user the operator's pods ask for."""

from __future__ import annotations

import importlib.metadata as md
import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from nova_operator.builders import USER_ID, OperatorConfig

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "nova"
IMAGES = {  # Dockerfile -> (values key, entrypoint, extras)
    "operator": (ROOT / "operator" / "Dockerfile", "nova-operator", {"operator"}),
    "trainer": (ROOT / "trainer_image" / "Dockerfile", "nova-trainer", {"trainer", "gpu"}),
}


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, buf = [], ""
    for line in path.read_text().splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        buf += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            word, _, rest = buf.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            buf = ""
    return out


def last(path: Path, word: str) -> str:
    found = [a for w, a in instructions(path) if w == word]
    assert found, f"{path} has no {word}"
    return found[-1]


def labels(path: Path) -> dict[str, str]:
    out = {}
    for w, a in instructions(path):
        if w == "LABEL":
            out.update(dict(re.findall(r'([\w.\-]+)="([^"]*)"', a)))
    return out


def build_args(path: Path) -> dict[str, str]:
    return dict(re.match(r"(\w+)=(\S+)", a).groups() for w, a in instructions(path) if w == "ARG" and "=" in a)


@pytest.fixture(scope="module")
def chart():
    return yaml.safe_load((CHART / "Chart.yaml").read_text()), yaml.safe_load((CHART / "values.yaml").read_text())


@pytest.fixture(scope="module")
def pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_entrypoint_is_a_console_script_of_the_package(image):
    dockerfile, command, _ = IMAGES[image]
    entrypoint = json.loads(last(dockerfile, "ENTRYPOINT"))
    assert entrypoint == [command], "exec form, one command: the operator's pods pass their own args"
    scripts = {ep.name: ep for ep in md.entry_points(group="console_scripts")}
    assert command in scripts, f"{command} is not a console script of an installed distribution"
    ep = scripts[command]
    assert ep.dist.metadata["Name"] == "nova"
    assert callable(ep.load()), f"{ep.value} does not load"
    json.loads(last(dockerfile, "CMD"))  # exec form too


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_image_names_and_versions_match_the_chart(image, chart, pyproject):
    meta, values = chart
    dockerfile = IMAGES[image][0]
    lab = labels(dockerfile)
    assert lab["dev.nova.image.repository"] == values["image"][image]["repository"]
    assert lab["org.opencontainers.image.title"] == IMAGES[image][1]
    assert lab["org.opencontainers.image.version"] == "${NOVA_VERSION}"
    assert build_args(dockerfile)["NOVA_VERSION"] == meta["appVersion"] == pyproject["project"]["version"]
    assert values["image"][image]["tag"] == "", "the tag defaults to appVersion"


def test_operator_default_trainer_image_is_the_charts_repository(chart):
    _, values = chart
    assert OperatorConfig().trainer_image.rsplit(":", 1)[0] == values["image"]["trainer"]["repository"]


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_image_installs_the_package_with_its_extras_and_runs_non_root(image):
    dockerfile, _, extras = IMAGES[image]
    runs = " ".join(a for w, a in instructions(dockerfile) if w == "RUN")
    installed = re.findall(r"pip install [^&]*?\[([a-z,$A-Z_]+)\]", runs)
    assert installed, runs
    named = installed[-1].removeprefix("$")
    # the extras are a build argument where the same file builds a CPU image (EXTRAS=trainer)
    named = build_args(dockerfile).get(named, named)
    assert set(named.split(",")) == extras, installed
    user = last(dockerfile, "USER")
    assert re.fullmatch(r"\d+(:\d+)?", user), "numeric USER, so that runAsNonRoot can check it"
    assert int(user.split(":")[0]) == USER_ID != 0, "the operator's pods run as builders.USER_ID"


def test_operator_image_has_no_xgboost(pyproject):
    dockerfile = IMAGES["operator"][0]
    assert "python:3.12-slim" in build_args(dockerfile)["PYTHON_IMAGE"]
    deps = " ".join(pyproject["project"]["dependencies"] + pyproject["project"]["optional-dependencies"]["operator"])
    assert "xgboost" not in deps and "cupy" not in deps and "rmm" not in deps
    assert "xgboost" not in dockerfile.read_text().replace("No xgboost", "").replace("no xgboost", "")


def test_trainer_image_is_cuda_runtime_with_talib(pyproject):
    dockerfile = IMAGES["trainer"][0]
    base = build_args(dockerfile)["BASE_IMAGE"]
    assert base.startswith("nvidia/cuda:") and "-runtime-" in base and "devel" not in base
    cuda_major = re.search(r"cuda:(\d+)\.", base).group(1)
    gpu = pyproject["project"]["optional-dependencies"]["gpu"]
    assert all(f"cu{cuda_major}" in g or f"cuda{cuda_major}" in g for g in gpu), (base, gpu)
    assert any(d.startswith("ta-lib") for d in pyproject["project"]["optional-dependencies"]["trainer"])
    assert "import talib, xgboost" in dockerfile.read_text(), "the build proves TA-Lib and XGBoost import"


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_build_context_ignores_the_rest_of_the_repository(image):
    dockerfile = IMAGES[image][0]
    ignore = Path(f"{dockerfile}.dockerignore").read_text().split()
    assert ignore[ignore.index("**")] == "**"
    for path in ("pyproject.toml", "nova/**", "operator/**", "trainer_image/**"):
        assert f"!{path}" in ignore
    copied = {a.split()[0] for w, a in instructions(dockerfile) if w == "COPY" and not a.startswith("--from")}
    assert copied <= {"pyproject.toml", "nova", "operator", "trainer_image"}
