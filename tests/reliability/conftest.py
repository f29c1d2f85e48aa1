"""Fixtures of the reliability suite. The control plane comes from `tests/cluster/fixtures.py`
(registered by the root conftest); PostgreSQL from `tests/conftest.py`."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "nova.dev_trainingruns.yaml"


@pytest.fixture(scope="session")
def crd_api(control_plane):
    """An admin `kubernetes` ApiClient on the real control plane, with the TrainingRun CRD applied
    and established."""
    control_plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_FILE))
    control_plane.kubectl("wait", "--for=condition=Established", "crd/trainingruns.nova.dev", "--timeout=60s")
    return control_plane.api_client()
