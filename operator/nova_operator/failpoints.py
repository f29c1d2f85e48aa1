"""Named crash points for the reliability suite, as etcd's gofail and Kubernetes' fault injection.

With NOVA_FAILPOINT=<name> in its environment the operator exits at once (os._exit: no cleanup, no
finalizers, as SIGKILL or a node dying would) the first time it reaches <name>. Tests use it to
kill the operator between two writes that a timed SIGKILL would almost never fall between; the
variable is never set in the chart, and unset it costs one comparison."""

from __future__ import annotations

import os
import sys

ENV = "NOVA_FAILPOINT"
# the points of one TrainingRun's life, in order (tests/operator/test_e2e.py kills the operator at each)
POINTS = ("after-configmap", "after-job", "after-studies",
          "before-status-Running", "before-status-Refitting", "before-status-Succeeded")
# a TrainingSchedule's run made, its status not yet written (tests/operator/test_schedule.py)
SCHEDULE_POINTS = ("schedule-after-create",)
_armed = os.environ.get(ENV) or None


def hit(name: str) -> None:
    if _armed is not None and _armed == name:
        sys.stderr.write(f"[nova failpoint] {name}: exiting\n")
        sys.stderr.flush()
        os._exit(137)
