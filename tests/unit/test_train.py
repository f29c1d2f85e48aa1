"""The trainer core: walk-forward training, QuantileDMatrix vs DMatrix, selection, model card."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import xgboost as xgb
import yaml

from nova.manifest import parse_run
from nova.spec import resolve
from nova_trainer import train as train_mod
from nova_trainer.api import train_symbol
from nova_trainer.dataset import load_symbol_data
from nova_trainer.device import resolve_device
from nova_trainer.matrices import make_matrices
from nova_trainer.train import evaluate, select_top_features
from tests.conftest import small_run_manifest


def spec_of(**overrides):
    return resolve(parse_run(small_run_manifest(**overrides))).spec


@pytest.fixture(scope="module")
def data():
    return load_symbol_data(spec_of(), "AAA")


def test_quantile_and_plain_dmatrix_predict_alike(data):
    X, y = data.X.iloc[:600], data.y[:600]
    params = {"tree_method": "hist", "max_depth": 3, "objective": "binary:logistic", "max_bin": 256, "nthread": 1}
    q_train, q_test, kind = make_matrices(X, y, data.X.iloc[600:], data.y[600:], True, 256)
    d_train, d_test, kind2 = make_matrices(X, y, data.X.iloc[600:], data.y[600:], False, 256)
    assert (kind, kind2) == ("QuantileDMatrix", "DMatrix")
    p_q = xgb.train(params, q_train, 30).predict(q_test)
    p_d = xgb.train(params, d_train, 30).predict(d_test)
    # Both quantise to the same hist bins; they differ only in where the sketch puts edges.
    assert np.corrcoef(p_q, p_d)[0, 1] > 0.99
    assert np.max(np.abs(p_q - p_d)) < 0.05


def test_quantile_matrix_refused_falls_back_to_dmatrix(data, monkeypatch, caplog):
    def refuse(*a, **k):
        raise xgb.core.XGBoostError("not supported here")

    monkeypatch.setattr(xgb, "QuantileDMatrix", refuse)
    _, _, kind = make_matrices(data.X, data.y, None, None, True, 256)
    assert kind == "DMatrix" and "falling back to DMatrix" in caplog.text


def test_walk_forward_evaluation_reports_every_metric_per_fold(data):
    spec = spec_of()
    result = evaluate(data, spec, {"max_depth": 3}, resolve_device("cpu"))
    assert len(result.folds) == 2 and result.matrix == "QuantileDMatrix" and result.device == "cpu"
    for fold in result.folds:
        assert set(fold.metrics) >= {"auc", "logloss", "accuracy", "sharpe", "hit_rate"}
        assert 0 <= fold.metrics["auc"] <= 1 and fold.rounds <= spec.model.num_boost_round
        assert fold.train_rows >= spec.validation.walk_forward.min_train_size


def test_top_n_selection_never_sees_the_test_window(data, monkeypatch):
    spec = spec_of(features={"selectTopN": 5})
    seen = []
    real = train_mod.select_top_features

    def spy(window, n, params, quantile):
        seen.append(window.X.index[-1])
        return real(window, n, params, quantile)

    monkeypatch.setattr(train_mod, "select_top_features", spy)
    result = evaluate(data, spec, {}, resolve_device("cpu"))
    for fold, last_seen in zip(result.folds, seen, strict=True):
        assert len(fold.features) == 5
        assert str(last_seen.date()) < fold.test_start  # ranked on training rows only


def test_selection_ranks_an_informative_feature_first(data):
    window = data.rows(slice(0, 600))
    noisy = window.X.assign(signal=window.y + np.random.default_rng(0).normal(0, 0.1, len(window.y)))
    window = type(window)(window.symbol, noisy, window.y, window.fwd_return)
    params = train_mod.xgb_params(spec_of(), {}, resolve_device("cpu"))
    assert select_top_features(window, 3, params, True)[0] == "signal"


def test_cuda_request_without_gpu_falls_back_and_says_so(caplog):
    choice = resolve_device("cuda")
    assert choice.device == "cpu" and "fell back to CPU" in choice.reason


def test_gradient_sampling_is_used_where_xgboost_accepts_it():
    spec = spec_of(model={"gradientSampling": True})
    params = train_mod.xgb_params(spec, {}, resolve_device("cpu"))
    accepted = train_mod.gradient_sampling_supported("cpu")
    assert ("sampling_method" in params) == accepted


def test_return_target_trains_a_regressor(data):
    spec = spec_of(target={"kind": "return"}, tuning={"metric": "rmse"})
    d = load_symbol_data(spec, "AAA")
    result = evaluate(d, spec, {}, resolve_device("cpu"))
    assert "rmse" in result.summary and "auc" not in result.summary


def test_train_symbol_writes_model_and_card(tmp_path, data):
    spec = spec_of()
    card = train_symbol(spec, "AAA", tmp_path, {"max_depth": 2}, data=data)
    booster = xgb.Booster()
    booster.load_model(str(tmp_path / "AAA" / "model.ubj"))
    on_disk = json.loads((tmp_path / "AAA" / "card.json").read_text())
    assert on_disk["device"]["used"] == "cpu" and on_disk["device"]["matrix"] == "QuantileDMatrix"
    assert on_disk["params"]["max_depth"] == 2 and len(on_disk["folds"]) == 2
    assert on_disk["features"] == booster.feature_names
    assert {"xgboost", "optuna", "pandas"} <= set(on_disk["versions"])
    assert on_disk["data"]["start"] < on_disk["data"]["end"] and card["model_file"] == "AAA/model.ubj"
    assert sorted(p.name for p in (tmp_path / "AAA").iterdir()) == [
        "card.json", "inferenceservice.yaml", "model-settings.json", "model.json", "model.ubj"]
    again = xgb.Booster()
    again.load_model(str(tmp_path / "AAA" / "model.json"))
    X = xgb.DMatrix(data.X[booster.feature_names].iloc[-20:])
    assert (again.predict(X) == booster.predict(X)).all(), "the JSON model is the same model"
    settings = json.loads((tmp_path / "AAA" / "model-settings.json").read_text())
    assert settings == {"name": "AAA", "implementation": "mlserver_xgboost.XGBoostModel",
                        "parameters": {"uri": "./model.json", "version": "local-g1"}}
    isvc = yaml.safe_load((tmp_path / "AAA" / "inferenceservice.yaml").read_text())
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == str(tmp_path / "AAA")
    assert not list(tmp_path.rglob(".*.tmp-*")), "no temporary file left behind"


def test_train_cli_prints_metrics(tmp_path, write_run):
    config = write_run()
    out = subprocess.run([sys.executable, "-m", "nova_trainer.cli", "train", "--config", str(config),
                          "--out", str(tmp_path), "--params", '{"max_depth": 2}'],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("AAA: ") and "auc=" in out.stdout and "device=cpu" in out.stdout
