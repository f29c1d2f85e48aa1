"""The package boundaries of DESIGN.md, checked on the source: the contract (`nova`) stands alone,
the operator never imports xgboost or the trainer, the trainer never imports kopf or the operator."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"nova": ROOT / "nova", "nova_operator": ROOT / "operator" / "nova_operator",
            "nova_trainer": ROOT / "trainer_image" / "nova_trainer"}
FORBIDDEN = {"nova": {"nova_trainer", "nova_operator", "optuna", "sqlalchemy", "grpc", "xgboost", "kopf",
                      "kubernetes", "pandas", "numpy"},
             "nova_operator": {"nova_trainer", "xgboost", "pandas", "talib"},
             "nova_trainer": {"nova_operator", "kopf", "kubernetes"}}


def imported_roots(path: Path) -> set[str]:
    """Top-level names of every module a file imports, at module level or inside functions."""
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_package_imports_stay_inside_their_boundary(package: str) -> None:
    files = sorted(PACKAGES[package].rglob("*.py"))
    assert files, f"no sources found for {package}"
    crossing = {f"{f.relative_to(ROOT)} imports {name}" for f in files
                for name in imported_roots(f) & FORBIDDEN[package]}
    assert not crossing, "\n".join(sorted(crossing))


def test_the_boundary_check_sees_a_crossing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from nova_trainer.local import runner\n    import xgboost.core\n")
    assert {"nova_trainer", "xgboost"} <= imported_roots(bad)
