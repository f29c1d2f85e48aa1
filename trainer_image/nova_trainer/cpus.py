"""How many threads this process may use: its container's CPU budget, not the node's cores.

Order: `$NOVA_CPUS` (the operator sets it from the container's CPU limit or request, see
`nova.cpus`); else the cgroup's CPU quota (`cpu.max`, a limit set some other way); else the CPUs
this process may run on. `model.nthread`, when the spec sets it, wins for XGBoost.

In one process that builds the next symbols on a thread while the current one trains (`nova run`,
`nova-trainer tune` without shards), XGBoost is given one core less while that thread still has
work: its OpenMP threads wait for the slowest of them at every step (and spin while they wait), so a
core shared with prep slows both stages instead of overlapping them. The pod's layout does the same
with two containers, each its own CPU budget.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from pathlib import Path

from nova.cpus import CPUS_ENV
from nova.errors import SpecError
from nova.spec import TrainingRunSpec

log = logging.getLogger(__name__)

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def _quota(path: Path = CGROUP_CPU_MAX) -> int | None:
    """Whole cores of a cgroup v2 quota ("200000 100000" -> 2), None when unlimited or unknown."""
    try:
        quota, period = path.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return max(1, math.ceil(int(quota) / int(period)))


def budget() -> int:
    """The threads this container's CPU allows (at least 1)."""
    value = os.environ.get(CPUS_ENV, "").strip()
    if value:
        try:
            cpus = int(value)
        except ValueError:
            raise SpecError(f"${CPUS_ENV}={value!r} is not a whole number of CPUs; the operator sets it from "
                            "the container's resources (limits.cpu or requests.cpu)") from None
        # A container with no CPU asked for: the Downward API gives 0 for an unset request
        if cpus >= 1:
            return cpus
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        available = os.cpu_count() or 1
    quota = _quota()
    return min(quota, available) if quota else available


_prep_busy: Callable[[], bool] | None = None  # set by sources.prefetched while it runs


def sharing_with_prep(busy: Callable[[], bool] | None) -> None:
    """Tell model_threads whether (and how to ask if) a prep thread of this process still has work."""
    global _prep_busy
    _prep_busy = busy


def model_threads(spec: TrainingRunSpec) -> int:
    """XGBoost's nthread: the spec's `model.nthread`, else the container's budget, less the core a
    prep thread of this process is using right now (asked at each trial's start)."""
    if spec.model.nthread:
        return spec.model.nthread
    cpus = budget()
    return cpus - 1 if cpus > 1 and _prep_busy is not None and _prep_busy() else cpus
