"""Database passwords never leave the Secret: a real local run against PostgreSQL with a password in
its URL, then a grep of everything it wrote (stdout, stderr, every file of the run folder: logs,
run.json, model cards, summary, report) and of a dump of the study database itself; and the
operator's builders, whose ConfigMap and pod manifests only ever hold Secret references."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import urllib.parse
import uuid
from pathlib import Path

import pytest
import yaml

from nova.manifest import parse_run
from nova.spec import resolve
from tests.conftest import small_run_manifest

pytestmark = pytest.mark.reliability


def _forms(password: str) -> list[bytes]:
    """The password as it could leak: plain, URL-quoted, base64 (a Secret's data)."""
    return [password.encode(), urllib.parse.quote(password, safe="").encode(), base64.b64encode(password.encode())]


def _grep_tree(root: Path, needles: list[bytes]) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            hits += [f"{path}: {n!r}" for n in needles if n in data]
    return hits


@pytest.fixture
def secret_db(postgres):
    """A role with a distinctive password and its own database; the URL carries the password."""
    tag = uuid.uuid4().hex[:8]
    password = f"Pw-{tag}-l3ak!"
    role = f"leak_{tag}"
    postgres.psql(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    postgres.psql(f'CREATE DATABASE "{role}" OWNER {role}')
    url = f"postgresql+psycopg://{role}:{urllib.parse.quote(password, safe='')}@127.0.0.1:{postgres.port}/{role}"
    return url, password, role


@pytest.mark.integration
@pytest.mark.timeout(400)
def test_a_local_run_writes_the_password_nowhere(postgres, secret_db, tmp_path):
    url, password, role = secret_db
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(small_run_manifest(name="leak", trials=3, workers=2)))
    out = tmp_path / "out"
    env = {**os.environ, "NOVA_LOG_LEVEL": "DEBUG"}
    result = subprocess.run([sys.executable, "-m", "nova_trainer.local.cli", "--log-level", "DEBUG", "run", str(config),
                             "--storage", url, "--out", str(out), "--no-progress"],
                            capture_output=True, env=env, timeout=360)
    assert result.returncode == 0, result.stderr[-3000:].decode(errors="replace")
    # the run really used the database: its studies are there
    assert postgres.psql("SELECT count(*) FROM studies", database=role) == "1"
    needles = _forms(password)
    assert (out / "run.json").exists() and (out / "AAA" / "card.json").exists() and (out / "logs").is_dir()
    leaks = [f"stdout: {n!r}" for n in needles if n in result.stdout]
    leaks += [f"stderr: {n!r}" for n in needles if n in result.stderr]
    leaks += _grep_tree(out, needles)
    dump = postgres._run(str(postgres.bin_dir / "pg_dump"), "-h", str(postgres.data_dir), "-p", str(postgres.port),
                         "-U", "postgres", "-d", role).stdout.encode()
    assert b"trial_values" in dump  # the dump is real
    leaks += [f"study database: {n!r}" for n in needles if n in dump]
    assert not leaks, leaks


@pytest.mark.integration
def test_storage_errors_with_the_password_mask_it(postgres, secret_db, tmp_path):
    """The password is right but the database is not: the error names the host, never the password."""
    url, password, _ = secret_db
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(small_run_manifest(name="leak2")))
    wrong_db = url.rsplit("/", 1)[0] + "/no_such_db"
    for command in ("tune", "refit"):
        result = subprocess.run([sys.executable, "-m", "nova_trainer.cli", "--log-level", "DEBUG", command,
                                 "--config", str(config), "--out", str(tmp_path / "out")],
                                env={**os.environ, "NOVA_STORAGE_URL": wrong_db}, capture_output=True, timeout=120)
        assert result.returncode == 2, result.stderr[-2000:]
        assert b"does not exist" in result.stderr and b"127.0.0.1" in result.stderr
        text = result.stdout + result.stderr
        assert not [n for n in _forms(password) if n in text], text[-2000:]
        assert not _grep_tree(tmp_path / "out", _forms(password))


def test_operator_builders_hold_only_secret_references():
    from nova_operator import builders

    manifest = small_run_manifest(name="refs", gpu={"count": 1})
    manifest["spec"]["tuning"]["storage"] = {"secretRef": {"name": "optuna-db", "key": "url"}}
    manifest["spec"]["data"] = {"source": "postgres", "table": "bars", "symbols": ["AAA"],
                                "secretRef": {"name": "bars-db", "key": "dsn"}}
    run = resolve(parse_run(manifest))
    owner = builders.owner_reference("refs", "uid-1")
    cfg = builders.OperatorConfig(trainer_image="nova-trainer:test")
    children = [builders.config_map(run, owner), builders.worker_job(run, owner, cfg),
                builders.refit_job(run, owner, cfg)]
    text = yaml.safe_dump(children)
    assert "postgresql" not in text and "://" not in children[0]["data"]["run.json"]
    for job in children[1:]:
        pod = job["spec"]["template"]["spec"]
        for container in pod["containers"] + pod.get("initContainers", []):
            env = {e["name"]: e for e in container["env"]}
            assert env["NOVA_STORAGE_URL"] == {"name": "NOVA_STORAGE_URL", "valueFrom": {
                "secretKeyRef": {"name": "optuna-db", "key": "url"}}}
            assert env["NOVA_DATA_URL"]["valueFrom"]["secretKeyRef"] == {"name": "bars-db", "key": "dsn"}
            assert not [e for e in container["env"] if "://" in str(e.get("value", ""))]
