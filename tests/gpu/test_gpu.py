"""The GPU path on a real CUDA device: run there with `pytest -m gpu tests/gpu -v`.

Skipped, with the reason, where `nova_trainer.device.gpu_count() == 0`. Nothing here is faked: each
test fails if the device path silently falls back to CPU or to the host. The RMM test runs in a
fresh Python process, because an RMM pool is process-wide and `init_rmm` answers once per process.

Tolerances (stated, not tuned to pass):
- one model, predicted by the CPU and by the GPU predictor: max |difference| <= 1e-5 (float32 sums
  over 50 trees in another order);
- the same data and params trained on CPU and on CUDA (the two `hist` implementations sketch bins
  and sum histograms differently, so trees may differ): Pearson correlation >= 0.99, mean
  |difference| <= 0.01 and held-out AUC within 0.01.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import xgboost as xgb

from nova_trainer.device import gpu_count, resolve_device
from nova_trainer.matrices import make_matrices

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(gpu_count() == 0, reason="no CUDA device visible (nova_trainer.device.gpu_count() "
                       "== 0); on a GPU machine: bench/gpu_install.sh, then pytest -m gpu tests/gpu -v"),
]

PARAMS = {"tree_method": "hist", "max_depth": 4, "max_bin": 256, "eta": 0.1,
          "objective": "binary:logistic", "verbosity": 0}


def _data(rows: int = 20_000, cols: int = 20, seed: int = 7):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, cols), dtype=np.float32)
    w = rng.standard_normal(cols).astype(np.float32)
    y = ((X @ w + rng.standard_normal(rows, dtype=np.float32)) > 0).astype(np.float32)
    return X, y


def _booster_device(booster: xgb.Booster) -> str:
    return json.loads(booster.save_config())["learner"]["generic_param"]["device"]


def test_auto_selects_cuda_and_training_runs_there():
    choice = resolve_device("auto")
    assert choice.device == "cuda", choice.reason
    assert resolve_device("cuda").device == "cuda"
    X, y = _data(2_000)
    booster = xgb.train({**PARAMS, "device": choice.device}, xgb.QuantileDMatrix(X, y), 5)
    assert _booster_device(booster).startswith("cuda")


def test_quantile_dmatrix_stays_on_device():
    import cupy as cp  # part of the GPU install (bench/gpu_install.sh): missing is a failure
    X, y = _data()
    Xd, yd = cp.asarray(X), cp.asarray(y)
    dtrain, dtest, kind = make_matrices(Xd[:15_000], yd[:15_000], Xd[15_000:], yd[15_000:], True, 256)
    assert kind == "QuantileDMatrix", "make_matrices fell back to DMatrix for device input"
    booster = xgb.train({**PARAMS, "device": "cuda"}, dtrain, 20, evals=[(dtest, "valid")], verbose_eval=False)
    pred = booster.inplace_predict(Xd[15_000:])
    assert isinstance(pred, cp.ndarray), f"prediction came back as {type(pred)}: the data left the device"
    assert pred.device.id == Xd.device.id
    assert pred.shape == (5_000,)


def test_predictions_of_one_model_equal_on_cpu_and_gpu():
    X, y = _data()
    booster = xgb.train({**PARAMS, "device": "cuda"}, xgb.QuantileDMatrix(X[:15_000], y[:15_000]), 50)
    gpu_pred = booster.inplace_predict(X[15_000:])
    booster.set_param({"device": "cpu"})
    cpu_pred = booster.inplace_predict(X[15_000:])
    gpu_pred = gpu_pred.get() if hasattr(gpu_pred, "get") else np.asarray(gpu_pred)
    assert np.max(np.abs(gpu_pred - np.asarray(cpu_pred))) <= 1e-5


def test_cpu_and_cuda_training_agree_within_tolerance():
    from sklearn.metrics import roc_auc_score

    X, y = _data()
    preds, aucs = {}, {}
    for device in ("cpu", "cuda"):
        booster = xgb.train({**PARAMS, "device": device}, xgb.QuantileDMatrix(X[:15_000], y[:15_000]), 50)
        assert _booster_device(booster).startswith(device)
        booster.set_param({"device": "cpu"})
        preds[device] = np.asarray(booster.inplace_predict(X[15_000:]))
        aucs[device] = roc_auc_score(y[15_000:], preds[device])
    corr = np.corrcoef(preds["cpu"], preds["cuda"])[0, 1]
    assert corr >= 0.99, corr
    assert np.mean(np.abs(preds["cpu"] - preds["cuda"])) <= 0.01
    assert abs(aucs["cpu"] - aucs["cuda"]) <= 0.01, aucs


RMM_CHILD = textwrap.dedent("""
    import json
    import numpy as np
    import xgboost as xgb
    from nova_trainer.device import init_rmm

    status = init_rmm(True, "cuda", "256Mi", "1Gi")
    import cupy as cp
    import rmm
    import rmm.statistics
    from rmm.allocators.cupy import rmm_cupy_allocator

    def chain(mr):
        names = []
        while mr is not None:
            names.append(type(mr).__name__)
            mr = mr.get_upstream() if hasattr(mr, "get_upstream") else None
        return names

    before = chain(rmm.mr.get_current_device_resource())
    cp.cuda.set_allocator(rmm_cupy_allocator)
    rmm.statistics.enable_statistics()
    rng = np.random.default_rng(0)
    X = cp.asarray(rng.standard_normal((20000, 20), dtype=np.float32))
    y = cp.asarray((rng.random(20000) > 0.5).astype(np.float32))
    booster = xgb.train({"tree_method": "hist", "device": "cuda", "max_depth": 4, "verbosity": 0,
                         "objective": "binary:logistic"}, xgb.QuantileDMatrix(X, y), 20)
    pred = booster.inplace_predict(X)
    during = chain(rmm.mr.get_current_device_resource())
    stats = rmm.statistics.get_statistics()
    print(json.dumps({"status": status, "before": before, "during": during,
                      "total_count": stats.total_count, "total_bytes": stats.total_bytes,
                      "pred_is_cupy": isinstance(pred, cp.ndarray),
                      "use_rmm_config": xgb.get_config()["use_rmm"],
                      "use_rmm_build": bool(xgb.build_info().get("USE_RMM"))}))
""")


def test_rmm_pool_is_active_during_training():
    """Nova's init_rmm sets a pool as the device resource; allocations made while training go
    through it (counted by RMM's statistics adaptor on top of the pool). XGBoost's own buffers go
    through RMM only where its build has RMM (`use_rmm` then on); the PyPI wheel has not."""
    out = subprocess.run([sys.executable, "-c", RMM_CHILD], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["status"].startswith("pool "), got["status"]
    assert got["before"][0] == "PoolMemoryResource", got["before"]
    assert "PoolMemoryResource" in got["during"], got["during"]
    assert got["total_count"] > 0 and got["total_bytes"] >= 20000 * 20 * 4, got
    assert got["pred_is_cupy"]
    assert got["use_rmm_config"] == got["use_rmm_build"], got
