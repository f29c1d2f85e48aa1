"""The operator's Prometheus metrics, read through prometheus-client's own exposition."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client import generate_latest

from nova_operator.metrics import OperatorMetrics
from tests.support.optuna_proxy import free_port


def exposition(metrics: OperatorMetrics) -> str:
    return generate_latest(metrics.registry).decode()


def test_runs_by_phase_and_trials_follow_the_last_pass_and_deletion():
    m = OperatorMetrics()
    m.runs.observe("u1", "team-a", "spy", {"phase": "Running", "trials": "7/40"})
    m.runs.observe("u2", "team-a", "qqq", {"phase": "Pending"})
    m.runs.observe("u1", "team-a", "spy", {"phase": "Succeeded", "trials": "40/40"})
    text = exposition(m)
    assert 'nova_trainingruns{phase="Succeeded"} 1.0' in text
    assert 'nova_trainingruns{phase="Pending"} 1.0' in text
    assert 'nova_trainingruns{phase="Running"} 0.0' in text
    assert 'nova_trials_finished{namespace="team-a",trainingrun="spy"} 40.0' in text
    assert 'nova_trials_budget{namespace="team-a",trainingrun="spy"} 40.0' in text
    assert 'trainingrun="qqq"' not in text  # no trial count yet: no sample rather than a false 0
    m.runs.forget("u1")
    text = exposition(m)
    assert 'nova_trainingruns{phase="Succeeded"} 0.0' in text and 'trainingrun="spy"' not in text


def test_reconcile_duration_and_errors_are_recorded():
    m = OperatorMetrics()
    with m.reconciling():
        pass
    with pytest.raises(TimeoutError), m.reconciling():
        raise TimeoutError
    text = exposition(m)
    assert "nova_reconcile_duration_seconds_count 2.0" in text
    assert 'nova_reconcile_errors_total{error="TimeoutError"} 1.0' in text


def test_served_over_http():
    m = OperatorMetrics()
    port = free_port()
    m.serve(port, "127.0.0.1")
    m.runs.observe("u1", "ns", "r", {"phase": "Failed"})
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        assert 'nova_trainingruns{phase="Failed"} 1.0' in r.read().decode()
