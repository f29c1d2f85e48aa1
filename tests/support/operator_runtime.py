"""What the operator loads at runtime, exercised in one process: every module of `nova` and
`nova_operator`, and the dependencies they load lazily (Optuna's gRPC proxy client needs grpcio,
postgresql URLs need psycopg with its bundled libpq, kopf's liveness endpoint needs aiohttp).

Run as a script it exits 0 or raises the first ImportError. Two callers: the unit test runs it in
the development venv with every import outside the `operator` extra's requirement closure blocked
(`python operator_runtime.py --only MODULES`), and the image smoke test runs it inside the built
operator image, where nothing but the extra is installed. Needs no network and no cluster."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import pkgutil
import site
import sys


class OnlyThese(importlib.abc.MetaPathFinder):
    """Refuses every top-level module installed in site-packages that is not in `allowed`, as an
    image without that distribution would (ModuleNotFoundError, so `except ImportError` still works).
    The standard library and the repository's own packages are always allowed."""

    def __init__(self, allowed: set[str]) -> None:
        self.allowed = allowed
        self.site = tuple(site.getsitepackages())

    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001 - importlib's signature
        if path is not None or fullname in self.allowed:
            return None  # a submodule: its top-level package passed here already
        spec = importlib.machinery.PathFinder.find_spec(fullname)
        if spec is not None and str(spec.origin or next(iter(spec.submodule_search_locations or []), "")
                                    ).startswith(self.site):
            raise ModuleNotFoundError(f"No module named {fullname!r} (not provided by the operator extra)",
                                      name=fullname)
        return None


def exercise() -> list[str]:
    """Import and touch everything the operator needs; returns the module names imported."""
    import nova
    import nova_operator

    names = []
    for package in (nova, nova_operator):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            importlib.import_module(info.name)
            names.append(info.name)
    from nova_operator.main import build_parser
    from nova_operator.studies import Studies

    build_parser().format_help()
    cache = Studies()
    cache.warm_up()
    cache.open_storage("grpc://127.0.0.1:9")  # builds a channel (grpc, protobuf); connects lazily
    import sqlalchemy

    # the dialect imports its driver at engine creation (no connection is made)
    sqlalchemy.create_engine("postgresql+psycopg://nova@127.0.0.1:9/nova")
    import psycopg

    assert psycopg.pq.__impl__ in ("binary", "c"), f"psycopg has no libpq of its own ({psycopg.pq.__impl__})"
    import aiohttp.web  # noqa: F401 - kopf's liveness endpoint
    import prometheus_client  # noqa: F401 - --metrics-port

    return names


def main(argv: list[str]) -> int:
    if argv[:1] == ["--only"]:
        sys.meta_path.insert(0, OnlyThese(set(argv[1].split(","))))
    names = exercise()
    print(f"ok: {len(names)} modules of nova and nova_operator and their lazy dependencies")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
