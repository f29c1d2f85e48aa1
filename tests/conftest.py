"""Shared fixtures: a real PostgreSQL and a real S3-compatible server (each started once per session
on loopback), and small runs."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from tests.support.postgres import PostgresServer, start_postgres

if (Path(__file__).parent / "cluster" / "fixtures.py").exists():
    pytest_plugins = ["tests.cluster.fixtures"]

_db_counter = itertools.count()


@pytest.fixture(scope="session")
def postgres() -> PostgresServer:
    server = start_postgres()
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def s3_server():
    """The real S3-compatible server (SeaweedFS), once per session; skipped where tests/s3/build.sh
    could not build it (no Go toolchain)."""
    from tests.s3.server import start_s3, weed_binary

    binary = weed_binary()
    if binary is None:
        pytest.skip("no weed binary (tests/s3/build.sh builds it; dev/test runs that)")
    server = start_s3(binary)
    yield server
    server.destroy()


@pytest.fixture
def s3_bucket(s3_server) -> str:
    """A fresh bucket per test."""
    return s3_server.make_bucket()


@pytest.fixture
def s3_env(s3_server, monkeypatch) -> dict[str, str]:
    """The environment of a local user of that server: keys, endpoint, region."""
    env = s3_server.env()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def pg_url(postgres: PostgresServer) -> str:
    """A fresh database per test, so studies never leak between tests."""
    return postgres.create_database(f"t{os.getpid()}_{next(_db_counter)}")


def small_run_manifest(name: str = "small", symbols=("AAA",), trials: int = 6, workers: int = 1,
                       **spec_overrides) -> dict:
    """A run that tunes in seconds on synthetic data: the shape every integration test starts from."""
    spec = {
        "data": {"source": "synthetic", "symbols": list(symbols), "bars": 900, "seed": 11},
        "features": {"set": "minimal"},
        "validation": {"walkForward": {"folds": 2, "testSize": 80, "gap": 1, "minTrainSize": 300}},
        "model": {"numBoostRound": 40, "earlyStoppingRounds": 10, "nthread": 1},
        "tuning": {"trials": trials, "workers": workers, "heartbeatSeconds": 1, "graceSeconds": 4,
                   "pruner": {"type": "median", "warmupSteps": 5, "startupTrials": 2}},
        "gpu": {"count": 0},
    }
    for key, value in spec_overrides.items():
        spec[key] = {**spec.get(key, {}), **value} if isinstance(value, dict) else value
    return {"apiVersion": "nova.dev/v1alpha1", "kind": "TrainingRun", "metadata": {"name": name}, "spec": spec}


@pytest.fixture
def write_run(tmp_path: Path):
    """Write a small run manifest to a YAML file and return its path."""
    import yaml

    def write(**kwargs) -> Path:
        manifest = small_run_manifest(**kwargs)
        path = tmp_path / f"{manifest['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump(manifest))
        return path

    return write
