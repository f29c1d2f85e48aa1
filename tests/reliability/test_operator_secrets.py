"""After a real operator run on the real control plane, with storage Secrets whose URLs carry a
password (one reachable PostgreSQL, one unreachable host), the password appears nowhere a user or
another workload could read it: TrainingRun status, Events, ConfigMaps, Jobs and pods, the
operator's own log (at --verbose)."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import uuid
from pathlib import Path

import pytest
import yaml

from tests.conftest import small_run_manifest

pytestmark = [pytest.mark.reliability, pytest.mark.cluster, pytest.mark.integration, pytest.mark.timeout(300)]
ROOT = Path(__file__).resolve().parents[2]


def _run(name: str, secret: str) -> dict:
    body = small_run_manifest(name=name)
    body["spec"]["tuning"]["storage"] = {"secretRef": {"name": secret, "key": "url"}}
    body["spec"]["resources"] = {"trainer": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                                 "prep": {"requests": {"cpu": "100m", "memory": "64Mi"}}}
    return body


def test_operator_run_leaks_no_password(control_plane, crd_api, kube_namespace, postgres, tmp_path):
    ns = kube_namespace
    tag = uuid.uuid4().hex[:8]
    password = f"Op-{tag}-s3cret"
    role = f"op_{tag}"
    postgres.psql(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    postgres.psql(f'CREATE DATABASE "{role}" OWNER {role}')
    good = f"postgresql+psycopg://{role}:{password}@127.0.0.1:{postgres.port}/{role}"
    down = f"postgresql+psycopg://{role}:{password}@127.0.0.1:1/{role}"
    for name, url in (("optuna", good), ("down", down)):
        control_plane.kubectl("-n", ns, "create", "secret", "generic", name, f"--from-literal=url={url}")
    log = tmp_path / "operator.log"
    with open(log, "w") as out:
        op = subprocess.Popen([sys.executable, "-m", "nova_operator.main", "-n", ns, "--status-interval", "1",
                               "--verbose"], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                              env={**os.environ, "KUBECONFIG": str(control_plane.kubeconfig),
                                   "NOVA_TRAINER_IMAGE": "nova-trainer:test"})
    try:
        control_plane.apply([{**_run("good", "optuna"), "metadata": {"name": "good", "namespace": ns}},
                             {**_run("bad", "down"), "metadata": {"name": "bad", "namespace": ns}}])
        deadline = time.monotonic() + 120
        while True:
            runs = yaml.safe_load(control_plane.kubectl("-n", ns, "get", "trainingruns", "-o", "yaml").stdout)
            status = {r["metadata"]["name"]: r.get("status") or {} for r in runs["items"]}
            bad_reasons = [c.get("reason") for c in status.get("bad", {}).get("conditions", [])]
            if status.get("good", {}).get("phase") in ("Preparing", "Running") and "StorageUnavailable" in bad_reasons:
                break
            assert time.monotonic() < deadline, f"{status}\n{log.read_text()[-3000:]}"
            time.sleep(0.5)
        # the operator really used the database: it created the study
        assert postgres.psql("SELECT count(*) FROM studies", database=role) == "1"
    finally:
        op.send_signal(signal.SIGINT)
        try:
            op.wait(20)
        except subprocess.TimeoutExpired:
            op.kill()
    readable = {
        kind: control_plane.kubectl("-n", ns, "get", kind, "-o", "yaml").stdout
        for kind in ("trainingruns", "events", "configmaps", "jobs", "pods")
    }
    readable["operator log"] = log.read_text()
    assert "StorageUnavailable" in readable["trainingruns"] and "127.0.0.1:1" in readable["trainingruns"]
    assert "good-config" in readable["configmaps"] and readable["events"].count("involvedObject") > 0
    forms = [password, urllib.parse.quote(password, safe=""), base64.b64encode(password.encode()).decode(),
             *(base64.b64encode(u.encode()).decode() for u in (good, down))]
    # positive control: the grep finds the password where it legitimately is (the Secret, base64)
    assert forms[-1] in control_plane.kubectl("-n", ns, "get", "secret", "down", "-o", "yaml").stdout
    leaks = [f"{where}: {form}" for where, text in readable.items() for form in forms if form in text]
    assert not leaks, leaks
