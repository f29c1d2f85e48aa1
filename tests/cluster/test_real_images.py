"""Nova's images as built from the repository's Dockerfiles (tests/cluster/images.sh), run by a real
containerd + runc as uid 1000 on a read-only root filesystem with no network: each entrypoint
starts, the operator image satisfies every runtime import of the operator (only its extra is
installed there), the trainer image has XGBoost, TA-Lib, Optuna and pyarrow."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
RUNTIME_CHECK = ROOT / "tests" / "support" / "operator_runtime.py"


def ok(proc) -> str:
    """The container's stdout (ctr's own warnings go to stderr) once it exited 0."""
    assert proc.returncode == 0, f"exit {proc.returncode}:\n{(proc.stdout + proc.stderr)[-3000:]}"
    return proc.stdout


@pytest.mark.parametrize("image, command", [("operator", "nova-operator"), ("trainer", "nova-trainer")])
def test_entrypoint_starts_read_only_as_uid_1000(node_runtime, image, command):
    ref = getattr(node_runtime.images, image)
    out = ok(node_runtime.run(ref, command, "--help"))
    assert f"usage: {command}" in out


def test_operator_image_has_everything_the_operator_imports(node_runtime):
    out = ok(node_runtime.run(node_runtime.images.operator, "python", "/check/operator_runtime.py",
                              mounts={str(RUNTIME_CHECK): "/check/operator_runtime.py"}))
    assert out.startswith("ok: ")


def test_operator_image_has_no_xgboost_and_runs_as_nova(node_runtime):
    out = ok(node_runtime.run(node_runtime.images.operator, "python", "-c",
                              "import importlib.util, os; print(importlib.util.find_spec('xgboost'), os.getuid(), "
                              "os.getgid())"))
    assert out.split() == ["None", "1000", "1000"]


def test_trainer_image_imports_xgboost_talib_optuna_pyarrow(node_runtime):
    code = ("import xgboost, talib, optuna, pyarrow, nova_trainer; "
            "print(xgboost.__version__, talib.__ta_version__, optuna.__version__, pyarrow.__version__)")
    out = ok(node_runtime.run(node_runtime.images.trainer, "python", "-c", code))
    assert len(out.split()) >= 4, out


def test_a_missing_module_fails_in_the_image(node_runtime):
    """The check can fail: a module the operator image does not have is an ImportError there."""
    proc = node_runtime.run(node_runtime.images.operator, "python", "-c", "import xgboost")
    assert proc.returncode != 0 and "No module named 'xgboost'" in proc.stdout + proc.stderr


def test_the_root_filesystem_is_read_only(node_runtime):
    proc = node_runtime.run(node_runtime.images.trainer, "python", "-c", "open('/opt/nova/x', 'w')")
    assert proc.returncode != 0 and "Read-only file system" in proc.stdout + proc.stderr
