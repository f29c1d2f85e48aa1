"""Process-wide knobs of the operator, read once from its environment (the chart sets them).

HANDLER_THREADS: threads running reconcile passes (kopf's executor), and the database pool's size.
A pass mostly waits on the API server and the database, but every thread also competes for the GIL
with kopf's event loop, which sends the status patches: under 200 new runs on 2 cores, 12 threads
created the Jobs as fast as 32 and made the statuses visible 30% sooner (bench/operator_scale.py).
STATUS_INTERVAL: seconds between status passes over a run."""

from __future__ import annotations

import os

HANDLER_THREADS = int(os.environ.get("NOVA_OPERATOR_WORKERS", "12"))
STATUS_INTERVAL = float(os.environ.get("NOVA_STATUS_INTERVAL", "10"))
