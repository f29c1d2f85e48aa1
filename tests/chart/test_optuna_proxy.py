"""The chart's Optuna gRPC storage proxy script (charts/nova/files/optuna_grpc_proxy.py), run as
the proxy pod runs it: a real server in front of a real storage, used by optuna's own client."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import optuna
import pytest

from tests.support.optuna_proxy import SCRIPT, free_port, start_proxy, stop


def exercise(url: str, port: int) -> None:
    proc = start_proxy(url, port)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            client = optuna.storages.GrpcStorageProxy(host="127.0.0.1", port=port)
            study = optuna.create_study(study_name="ns.run.AAA", storage=client, direction="maximize")
            study.optimize(lambda t: t.suggest_float("eta", 0.01, 0.3), n_trials=5)
            client.close()
        direct = optuna.load_study(study_name="ns.run.AAA", storage=url.replace("postgresql://",
                                                                                   "postgresql+psycopg://"))
        assert len(direct.trials) == 5 and direct.best_value == max(t.value for t in direct.trials)
    finally:
        out = stop(proc)
    assert proc.returncode in (0, -15), out
    assert "serving the Optuna storage" in out
    password = url.split("@")[0].rpartition(":")[2] if "@" in url else None
    if password:
        assert password not in out, "the proxy printed the database password"


def test_proxy_serves_a_sqlite_storage(tmp_path):
    exercise(f"sqlite:///{tmp_path / 'optuna.db'}", free_port())


@pytest.mark.integration
def test_proxy_serves_postgresql_without_printing_the_password(pg_url):
    exercise(pg_url, free_port())


def test_proxy_refuses_to_start_without_a_url():
    env = {k: v for k, v in os.environ.items() if k != "NOVA_STORAGE_URL"}
    proc = subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "NOVA_STORAGE_URL is not set" in proc.stderr
