"""The floor for bench/operator_scale.py: the least a controller can do for a new TrainingRun.

A plain watch (the kubernetes client, no kopf) on one namespace; for every new run, Nova's own
builders make its ConfigMap and worker Job, and two POSTs create them, from as many threads as the
operator has. No Optuna studies, no status, no Events, no Secret check: what is left is the API
server's and the machine's share of apply -> Job, which no operator can go under. It logs
"created Job <ns>/<run>-workers" as the operator does, so the bench reads both logs alike.

    python bench/_floor_controller.py -n NAMESPACE [--threads N]
"""

from __future__ import annotations

import argparse
import logging
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "operator"))

from kubernetes import watch  # noqa: E402

from nova.spec import API_GROUP, API_VERSION, PLURAL  # noqa: E402
from nova_operator import builders  # noqa: E402
from nova_operator.kube import Kube, load_config  # noqa: E402
from nova_operator.reconcile import resolve_run  # noqa: E402
from nova_operator.settings import DEFAULT_HANDLER_THREADS  # noqa: E402

log = logging.getLogger("floor")


def create_children(kube: Kube, cfg: builders.OperatorConfig, body: dict) -> None:
    run = resolve_run(body)
    owner = builders.owner_reference(run.name, body["metadata"]["uid"])
    kube.create_or_get(builders.config_map(run, owner))
    job, _ = kube.create_or_get(builders.worker_job(run, owner, cfg))
    log.info("created Job %s/%s", run.namespace, job["metadata"]["name"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", "--namespace", required=True)
    parser.add_argument("--threads", type=int, default=DEFAULT_HANDLER_THREADS, help="default: the operator's")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    load_config(pool_size=args.threads + 8)
    kube, cfg = Kube(), builders.OperatorConfig.from_env()
    pool = ThreadPoolExecutor(args.threads)
    seen: set[str] = set()
    log.info("watching %s", args.namespace)
    while True:
        stream = watch.Watch().stream(kube.custom.list_namespaced_custom_object, API_GROUP, API_VERSION,
                                      args.namespace, PLURAL, timeout_seconds=300)
        for event in stream:
            body = event["object"]
            uid = body["metadata"]["uid"]
            if event["type"] == "ADDED" and uid not in seen:
                seen.add(uid)
                pool.submit(create_children, kube, cfg, body)


if __name__ == "__main__":
    sys.exit(main())
