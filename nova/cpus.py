"""The CPU budget of a worker pod's container, as the operator hands it to the process inside.

The prep sidecar and the trainer share a pod, and a node's cores with other pods: each must use as
many threads as its own container was given, not all the node's cores (XGBoost's default), or the
two compete for the same cores and prep no longer runs ahead of the trainer. The Job sets
`$NOVA_CPUS` in each container from that container's own CPU (the Downward API, rounded up to whole
cores): its limit when the spec sets one (more threads than the CFS quota are throttled), else its
request (what the scheduler reserved for it). The trainer reads it in `nova_trainer.cpus`.
"""

from __future__ import annotations

CPUS_ENV = "NOVA_CPUS"


def cpu_source(requests: dict[str, str], limits: dict[str, str]) -> str | None:
    """Which of a container's resources sizes its threads: limits.cpu, else requests.cpu, else none."""
    if "cpu" in limits:
        return "limits.cpu"
    if "cpu" in requests:
        return "requests.cpu"
    return None
