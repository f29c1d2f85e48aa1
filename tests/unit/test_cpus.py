"""Threads follow the container's CPU budget ($NOVA_CPUS, else the cgroup quota), not the node's cores."""

from __future__ import annotations

import os

import pytest

from nova.errors import SpecError
from nova.spec import TrainingRunSpec
from nova_trainer import cpus
from nova_trainer.device import DeviceChoice
from nova_trainer.train import xgb_params


def spec(**model) -> TrainingRunSpec:
    return TrainingRunSpec.model_validate({"data": {"symbols": ["AAA"]}, "model": model})


def test_the_env_the_job_sets_is_the_budget(monkeypatch):
    monkeypatch.setenv("NOVA_CPUS", "3")
    assert cpus.budget() == 3
    assert cpus.model_threads(spec()) == 3
    assert xgb_params(spec(), {}, DeviceChoice("cpu", "test"))["nthread"] == 3
    assert cpus.model_threads(spec(nthread=5)) == 5  # model.nthread, when set, wins


def test_an_unset_request_falls_back_to_the_cpus_this_process_may_use(monkeypatch):
    monkeypatch.setenv("NOVA_CPUS", "0")  # the Downward API's value for a container that asked no CPU
    assert 1 <= cpus.budget() <= len(os.sched_getaffinity(0))
    monkeypatch.delenv("NOVA_CPUS")
    assert 1 <= cpus.budget() <= len(os.sched_getaffinity(0))


def test_a_malformed_budget_names_the_variable(monkeypatch):
    monkeypatch.setenv("NOVA_CPUS", "two")
    with pytest.raises(SpecError, match=r"\$NOVA_CPUS='two' is not a whole number"):
        cpus.budget()


@pytest.mark.parametrize("text, cores", [("max 100000", None), ("200000 100000", 2), ("150000 100000", 2),
                                         ("50000 100000", 1), ("garbage", None)])
def test_cgroup_quota_in_whole_cores(tmp_path, text, cores):
    path = tmp_path / "cpu.max"
    path.write_text(text + "\n")
    assert cpus._quota(path) == cores


def test_no_cgroup_file_means_no_quota(tmp_path):
    assert cpus._quota(tmp_path / "absent") is None
