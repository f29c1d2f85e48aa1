"""Device choice and RMM on a machine without a GPU (and the same logic with a GPU count faked).

Runs everywhere: where a test needs "no GPU" it fakes `gpu_count` rather than assuming the machine,
except the RMM-without-GPU test, which needs a machine that really has none."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import xgboost as xgb

from nova.manifest import parse_run
from nova.spec import resolve
from nova_trainer import device as device_mod
from nova_trainer import train as train_mod
from nova_trainer.device import DeviceChoice, gpu_count, init_rmm, parse_quantity, resolve_device
from tests.conftest import small_run_manifest


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(device_mod, "gpu_count", lambda: 0)


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(device_mod, "gpu_count", lambda: 2)


@pytest.fixture
def fresh_rmm(monkeypatch):
    """init_rmm answers once per process; each test starts from 'not initialised'."""
    monkeypatch.setattr(device_mod, "_rmm_status", None)


def test_gpu_count_is_a_count():
    n = gpu_count()
    assert isinstance(n, int) and n >= 0


def test_auto_without_gpu_picks_cpu_and_says_why(no_gpu):
    choice = resolve_device("auto")
    assert choice == DeviceChoice("cpu", "no CUDA device found (model.device auto)")


def test_cuda_without_gpu_falls_back_to_cpu_with_a_warning(no_gpu, caplog):
    with caplog.at_level(logging.WARNING, logger="nova_trainer.device"):
        choice = resolve_device("cuda")
    assert choice.device == "cpu"
    assert "fell back to CPU" in choice.reason and "no CUDA device" in choice.reason
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings, "falling back from cuda to CPU must be logged as a warning"
    assert "cuda" in warnings[0].getMessage() and "CPU" in warnings[0].getMessage()


def test_cpu_is_cpu_whatever_the_machine(no_gpu):
    assert resolve_device("cpu") == DeviceChoice("cpu", "model.device is cpu")


def test_cpu_stays_cpu_even_with_gpus(two_gpus):
    assert resolve_device("cpu").device == "cpu"


@pytest.mark.parametrize("requested", ["auto", "cuda"])
def test_gpu_present_picks_cuda(two_gpus, requested):
    choice = resolve_device(requested)
    assert choice.device == "cuda" and "2 CUDA device(s)" in choice.reason


def test_this_machine_without_gpu_resolves_to_cpu():
    if gpu_count() > 0:
        pytest.skip("this machine has a CUDA device: tests/gpu covers it")
    assert resolve_device("auto").device == "cpu"
    assert resolve_device("cuda").device == "cpu"


def test_init_rmm_on_cpu_is_a_clear_no(fresh_rmm):
    assert init_rmm(True, "cpu", "8Gi", "14Gi") == "not used: training on CPU"


def test_init_rmm_disabled(fresh_rmm):
    assert init_rmm(False, "cuda", "8Gi", "14Gi") == "disabled by gpu.rmm.enabled"


def test_init_rmm_answers_once_per_process(fresh_rmm):
    first = init_rmm(False, "cpu", "8Gi", "14Gi")
    assert init_rmm(True, "cpu", "1Gi", "2Gi") == first


def test_init_rmm_asked_for_cuda_without_a_gpu_does_not_crash(fresh_rmm):
    """rmm imports without a GPU and fails at the first allocation: the status says so, no raise."""
    if gpu_count() > 0:
        pytest.skip("this machine has a CUDA device: tests/gpu checks the pool itself")
    status = init_rmm(True, "cuda", "8Gi", "14Gi")
    assert status.startswith(("not installed", "unavailable (")), status
    assert "XGBoost uses its default CUDA allocator" in status


@pytest.mark.parametrize(("text", "expected"), [
    ("8Gi", 8 * 2**30), ("14Gi", 14 * 2**30), ("512Mi", 512 * 2**20), ("1Ki", 1024), ("2Ti", 2 * 2**40),
    ("1G", 10**9), ("512M", 512 * 10**6), ("1.5Gi", int(1.5 * 2**30)), ("100", 100), (" 4Gi ", 4 * 2**30),
])
def test_parse_quantity(text, expected):
    assert parse_quantity(text) == expected


@pytest.mark.parametrize("bad", ["", "Gi", "8 GB", "8gi", "-1Gi", "eight"])
def test_parse_quantity_refuses_what_is_not_a_quantity(bad):
    with pytest.raises(ValueError, match="not a byte quantity"):
        parse_quantity(bad)


def test_gradient_sampling_supported_is_a_bool_that_matches_xgboost():
    supported = train_mod.gradient_sampling_supported("cpu")
    assert isinstance(supported, bool)
    rng = np.random.default_rng(3)
    X, y = rng.random((200, 4)), rng.integers(0, 2, 200)
    try:
        xgb.train({"tree_method": "hist", "device": "cpu", "sampling_method": "gradient_based",
                   "subsample": 0.3, "objective": "binary:logistic", "verbosity": 0}, xgb.DMatrix(X, y), 2)
        accepted = True
    except xgb.core.XGBoostError:
        accepted = False
    assert supported is accepted


def _spec(gradient_sampling: bool):
    return resolve(parse_run(small_run_manifest(model={"gradientSampling": gradient_sampling}))).spec


@pytest.mark.parametrize("supported", [True, False])
def test_xgb_params_sets_sampling_method_only_when_supported(monkeypatch, supported):
    monkeypatch.setattr(train_mod, "gradient_sampling_supported", lambda device: supported)
    params = train_mod.xgb_params(_spec(True), {}, DeviceChoice("cpu", "test"))
    if supported:
        assert params["sampling_method"] == "gradient_based"
    else:
        assert "sampling_method" not in params
    assert params["device"] == "cpu" and params["tree_method"] == "hist"


def test_xgb_params_without_gradient_sampling_never_sets_it(monkeypatch):
    monkeypatch.setattr(train_mod, "gradient_sampling_supported", lambda device: True)
    params = train_mod.xgb_params(_spec(False), {}, DeviceChoice("cuda", "test"))
    assert "sampling_method" not in params
    assert params["device"] == "cuda"
