"""The real MLServer (PyPI's mlserver + mlserver-xgboost, in their own venv made by
tests/serving/mlserver_env.sh) serves one symbol's folder exactly as Nova's refit wrote it, and its
V2 inference endpoint agrees with `nova predict` on the same bars."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from nova.spec import ResolvedRun, TrainingRunSpec
from tests.conftest import small_run_manifest
from tests.support.postgres import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
ENV_SCRIPT = Path(__file__).resolve().parents[1] / "serving" / "mlserver_env.sh"


@pytest.fixture(scope="module")
def mlserver_bin() -> Path:
    made = subprocess.run([str(ENV_SCRIPT)], capture_output=True, text=True, timeout=900)
    if made.returncode == 3:
        pytest.skip(made.stderr.strip())
    assert made.returncode == 0, made.stderr[-2000:]
    return Path(subprocess.run([str(ENV_SCRIPT), "--print"], capture_output=True, text=True, check=True).stdout.strip())


def _get(url: str, timeout: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def test_mlserver_serves_the_folder_nova_wrote_with_nova_predicts_numbers(mlserver_bin, tmp_path):
    from nova_trainer.api import train_symbol
    from nova_trainer.predict import features_for, predict
    from nova_trainer.serving import v2_request

    manifest = small_run_manifest(name="serve", symbols=("AAA",))
    run = ResolvedRun(name="serve", spec=TrainingRunSpec.model_validate(manifest["spec"]))
    root = tmp_path / "models"
    card = train_symbol(run.spec, "AAA", root, extra_card={"run": {"name": "serve", "namespace": "default",
                                                                    "generation": 1}})
    folder = root / "AAA"
    assert sorted(p.name for p in folder.iterdir()) == [
        "card.json", "inferenceservice.yaml", "model-settings.json", "model.json", "model.ubj"]

    port = free_port()
    env = {**os.environ, "MLSERVER_HTTP_PORT": str(port), "MLSERVER_GRPC_PORT": str(free_port()),
           "MLSERVER_METRICS_PORT": str(free_port()), "MLSERVER_PARALLEL_WORKERS": "0",
           "MLSERVER_METRICS_ENDPOINT": ""}
    env.pop("PYTHONPATH", None)
    log = open(tmp_path / "mlserver.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([str(mlserver_bin), "start", str(folder)], stdout=log, stderr=subprocess.STDOUT,
                            env=env, cwd=tmp_path, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while _get(f"{base}/v2/models/AAA/ready") != 200:
            assert proc.poll() is None, (tmp_path / "mlserver.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (tmp_path / "mlserver.log").read_text()[-3000:]
            time.sleep(0.5)

        ours = predict(run, "AAA", str(root), last=40)
        X = features_for(run, "AAA", card["features"], last=40)
        body = json.dumps(v2_request(X)).encode()
        req = urllib.request.Request(f"{base}/v2/models/AAA/infer", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            answer = json.loads(r.read())
        (output,) = answer["outputs"]
        served = np.asarray(output["data"], dtype="float64").reshape(-1)
        assert served.shape == (40,)
        np.testing.assert_allclose(served, ours["prediction"].to_numpy(), rtol=1e-5, atol=1e-6)
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
        log.close()
