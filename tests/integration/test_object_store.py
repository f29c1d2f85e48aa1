"""Bars in and models out of a real S3-compatible server (SeaweedFS on loopback, a bucket per test):
a universe read from it, a whole local run writing its models to it, the errors a wrong key or a
missing bucket give, and a server that dies in the middle of a write."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time

import pandas as pd
import pytest
import xgboost as xgb
import yaml
from pyarrow.fs import FileSelector

from nova.errors import DataError, NovaError
from nova.spec import DataSpec, ObjectStoreSpec
from tests.conftest import small_run_manifest
from tests.s3.server import SECRET_KEY

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def put(fs, path: str, data: bytes) -> None:
    with fs.open_output_stream(path) as f:
        f.write(data)


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.to_parquet(buf)
    return buf.getvalue()


def bars(symbol: str, n: int = 900, seed: int = 11) -> pd.DataFrame:
    from nova_trainer.data.synthetic import generate

    return generate(symbol, n, seed, "1d", start="2015-01-02")


def upload_universe(s3_server, bucket: str, symbols=("AAA", "BBB"), prefix: str = "bars/daily") -> str:
    fs = s3_server.filesystem()
    for symbol in symbols:
        put(fs, f"{bucket}/{prefix}/{symbol}.parquet", parquet_bytes(bars(symbol)))
    return f"s3://{bucket}/{prefix}/"


def store(s3_server) -> dict:
    return {"endpoint": s3_server.endpoint, "region": "us-east-1"}


def nova(*args: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "nova_trainer.local.cli", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, **kw)


def test_a_universe_is_read_from_the_bucket_as_from_a_folder(s3_server, s3_bucket, s3_env, tmp_path):
    from nova_trainer.data import load_bars

    uri = upload_universe(s3_server, s3_bucket)
    spec = DataSpec(source="file", uri=uri, symbols=["AAA", "BBB"], objectStore=ObjectStoreSpec(**store(s3_server)))
    local = tmp_path / "bars"
    local.mkdir()
    for symbol in ("AAA", "BBB"):
        bars(symbol).to_parquet(local / f"{symbol}.parquet")
        from_s3 = load_bars(spec, symbol)
        from_disk = load_bars(spec.model_copy(update={"uri": str(local), "object_store": ObjectStoreSpec()}), symbol)
        pd.testing.assert_frame_equal(from_s3, from_disk)
        assert len(from_s3) == 900

    # one long CSV table with a symbol column: scanned in row batches, one symbol's rows kept
    long = pd.concat([bars(s).reset_index().assign(symbol=s) for s in ("AAA", "BBB")])
    put(s3_server.filesystem(), f"{s3_bucket}/long/all.csv", long.to_csv(index=False).encode())
    table_spec = spec.model_copy(update={"uri": f"s3://{s3_bucket}/long/all.csv"})
    pd.testing.assert_frame_equal(load_bars(table_spec, "BBB"), load_bars(spec, "BBB"), check_freq=False)
    with pytest.raises(DataError, match=r"unknown symbol 'ZZZ' in s3://.*/long/all.csv; it holds \['AAA', 'BBB'\]"):
        load_bars(table_spec, "ZZZ")
    # a glob over the prefix
    glob_spec = spec.model_copy(update={"uri": f"s3://{s3_bucket}/bars/daily/*.parquet"})
    assert len(load_bars(glob_spec, "AAA")) == 900


def test_a_local_run_reads_and_writes_the_bucket_and_predict_reads_it_back(s3_server, s3_bucket, s3_env, tmp_path):
    uri = upload_universe(s3_server, s3_bucket, symbols=("AAA",))
    manifest = small_run_manifest(name="s3run", symbols=("AAA",), trials=4)
    manifest["spec"]["data"] = {"source": "file", "uri": uri, "symbols": ["AAA"], "objectStore": store(s3_server)}
    manifest["spec"]["output"] = {"uri": f"s3://{s3_bucket}/models", "objectStore": store(s3_server)}
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(manifest))
    out = tmp_path / "work"
    result = nova("run", str(config), "--out", str(out), "--no-progress", timeout=500)
    assert result.returncode == 0, result.stderr[-3000:]
    prefix = f"{s3_bucket}/models/default/s3run/AAA"
    assert f"models s3://{prefix.rsplit('/', 1)[0]}" in result.stdout

    fs = s3_server.filesystem()
    names = sorted(i.base_name for i in fs.get_file_info(FileSelector(prefix)))
    assert [n for n in names if not n.endswith(".png")] == [
        "card.json", "inferenceservice.yaml", "model-settings.json", "model.json", "model.ubj"]
    assert {"equity.png", "history.png"} <= set(names)  # the refit's figures, beside the card
    with fs.open_input_stream(f"{prefix}/card.json") as f:
        card = json.loads(f.read())
    assert card["model_uri"] == f"s3://{prefix}" and card["model_file"] == "AAA/model.ubj"
    with fs.open_input_stream(f"{prefix}/model.ubj") as f:
        booster = xgb.Booster()
        booster.load_model(bytearray(f.read()))
    assert booster.feature_names == card["features"]
    with fs.open_input_stream(f"{prefix}/inferenceservice.yaml") as f:
        isvc = yaml.safe_load(f.read())
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1" and isvc["kind"] == "InferenceService"
    assert isvc["spec"]["predictor"]["model"] == {"modelFormat": {"name": "xgboost"}, "protocolVersion": "v2",
                                                  "storageUri": f"s3://{prefix}"}
    with fs.open_input_stream(f"{prefix}/model-settings.json") as f:
        settings = json.loads(f.read())
    assert settings["implementation"] == "mlserver_xgboost.XGBoostModel"
    assert settings["parameters"]["uri"] == "./model.json"
    leftovers = FileSelector(f"{s3_bucket}/models/default/s3run/_incomplete", allow_not_found=True, recursive=True)
    assert not fs.get_file_info(leftovers), "every temporary object was moved to its final key"
    assert (out / "report.html").stat().st_size > 1_000_000  # the report read the card from the bucket

    shown = nova("predict", str(config), "--symbol", "AAA", "--last", "5", "--out", str(out), timeout=120)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.strip().splitlines()
    assert lines[0].split() == ["timestamp", "P(rise)", "signal"] and len(lines) == 6
    last_bar = str(bars("AAA").index[-1].date())
    assert lines[-1].startswith(last_bar), "the newest bar (no label yet) gets a signal too"
    assert all(line.split()[2] in ("+1", "-1") for line in lines[1:])
    for where in (result.stdout, result.stderr, shown.stdout, json.dumps(card), (out / "run.json").read_text()):
        assert SECRET_KEY not in where


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert SECRET_KEY not in result.stderr + result.stdout
    return lines[0]


def test_a_wrong_key_and_a_missing_bucket_each_give_one_clear_line(s3_server, s3_bucket, s3_env, tmp_path):
    uri = upload_universe(s3_server, s3_bucket, symbols=("AAA",))
    manifest = small_run_manifest(name="bad", symbols=("AAA",), trials=2)
    manifest["spec"]["data"] = {"source": "file", "uri": uri, "symbols": ["AAA"], "objectStore": store(s3_server)}
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(manifest))

    wrong = nova("validate", str(config), env={"AWS_SECRET_ACCESS_KEY": "not-the-key"}, timeout=120)
    line = _one_error_line(wrong)
    assert f"bucket '{s3_bucket}'" in line and s3_server.endpoint in line and "access denied" in line, line

    manifest["spec"]["data"]["uri"] = "s3://no-such-bucket-here/bars/"
    config.write_text(yaml.safe_dump(manifest))
    missing = nova("validate", str(config), timeout=120)
    line = _one_error_line(missing)
    assert "bucket 'no-such-bucket-here'" in line and s3_server.endpoint in line and "no such bucket" in line, line

    # the output side says the same, before any trial runs
    manifest["spec"]["data"]["uri"] = uri
    manifest["spec"]["output"] = {"uri": "s3://no-such-models/x", "objectStore": store(s3_server)}
    config.write_text(yaml.safe_dump(manifest))
    run = nova("run", str(config), "--out", str(tmp_path / "w"), "--no-progress", timeout=300)
    line = _one_error_line(run)
    assert "bucket 'no-such-models'" in line and s3_server.endpoint in line and "no such bucket" in line, line


def test_a_server_that_dies_mid_write_loses_no_finished_model_and_shows_no_half_one(s3_server, s3_bucket, s3_env):
    from nova_trainer import store as stores
    from nova_trainer.model_card import read_card, write_model

    spec = ObjectStoreSpec(**store(s3_server))
    root = f"s3://{s3_bucket}/models/default/crash"
    X = bars("AAA").pct_change().dropna()
    booster = xgb.train({"max_depth": 2, "nthread": 1}, xgb.DMatrix(X, (X["close"] > 0).astype(int)), 3)
    write_model(root, "AAA", booster, {"symbol": "AAA"}, spec, {"name": "crash"})

    big = b"\0" * (96 << 20)  # large enough to be in flight when the server dies
    failure: list[BaseException] = []
    target = stores.place(root, spec, "output").child("BBB", "model.ubj")

    def write() -> None:
        try:
            stores.write_atomic(target, big, tmp_root=stores.place(root, spec, "output"))
        except NovaError as exc:
            failure.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    time.sleep(0.4)
    s3_server.kill()
    writer.join(timeout=120)
    assert failure and "cannot write" in str(failure[0]) and SECRET_KEY not in str(failure[0])
    s3_server.start()

    assert read_card(root, "AAA", spec)["symbol"] == "AAA"
    fs = s3_server.filesystem()
    with fs.open_input_stream(f"{s3_bucket}/models/default/crash/AAA/model.ubj") as f:
        again = xgb.Booster()
        again.load_model(bytearray(f.read()))
    assert again.num_boosted_rounds() == 3
    assert read_card(root, "BBB", spec) is None
    info = fs.get_file_info(f"{s3_bucket}/models/default/crash/BBB/model.ubj")
    assert info.type.name == "NotFound", "a half-written model must never appear under its final key"
