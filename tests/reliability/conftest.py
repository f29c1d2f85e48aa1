"""Fixtures of the reliability suite. The control plane comes from `tests/cluster/fixtures.py`
(registered by the root conftest); PostgreSQL from `tests/conftest.py`."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "nova.dev_trainingruns.yaml"
SCHEDULE_CRD_FILE = ROOT / "crds" / "nova.dev_trainingschedules.yaml"


@pytest.fixture(scope="session")
def crd_api(control_plane):
    """An admin `kubernetes` ApiClient on the real control plane, with Nova's CRDs (TrainingRun,
    TrainingSchedule) applied and established."""
    for path, name in ((CRD_FILE, "trainingruns.nova.dev"), (SCHEDULE_CRD_FILE, "trainingschedules.nova.dev")):
        control_plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
        control_plane.kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")
    return control_plane.api_client()
