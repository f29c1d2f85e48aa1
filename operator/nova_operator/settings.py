"""Process-wide knobs of the operator, read once from its environment (the chart sets them).

HANDLER_THREADS: threads running reconcile passes (kopf's executor). A pass mostly waits on the API
server and the database (three round trips for a new run: ConfigMap, studies, Job), so threads,
not CPU, bound how fast a burst of new runs gets its Jobs: under 200 runs applied at once on 2
cores, p95 apply -> Job went from 4.3 s with 12 threads to 2.2-2.9 s with 24-48
(bench/operator_scale.py). The database pool is capped apart from them (studies.DB_POOL).
STATUS_INTERVAL: seconds between status passes over a run."""

from __future__ import annotations

import os

HANDLER_THREADS = int(os.environ.get("NOVA_OPERATOR_WORKERS", "32"))
STATUS_INTERVAL = float(os.environ.get("NOVA_STATUS_INTERVAL", "10"))
