"""`nova-operator`: run the TrainingRun operator (kopf) in one namespace, several, or all.

  nova-operator                       every namespace (cluster-wide)
  nova-operator -n team-a -n team-b   only these ($NOVA_WATCH_NAMESPACE, comma-separated, also works)

Images and defaults come from the environment: NOVA_TRAINER_IMAGE, NOVA_OUTPUT_CLAIM,
NOVA_DEFAULT_STORAGE_SECRET (name[/key]), NOVA_STATUS_INTERVAL (seconds), NOVA_OPERATOR_STORAGE_URL
(the operator's own storage URL, when it reaches the database another way than the pods),
NOVA_METRICS_PORT (serve Prometheus metrics at :PORT/metrics), NOVA_LEADER_ELECT (lead through a Lease,
for a standby replica: leadership.py)."""

from __future__ import annotations

import argparse
import logging
import os
import sys

import kopf

from nova_operator.settings import Settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nova-operator", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--namespace", action="append", default=[],
                        help="watch this namespace (repeatable); default: $NOVA_WATCH_NAMESPACE or all")
    parser.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    parser.add_argument("--liveness", default=os.environ.get("NOVA_LIVENESS"),
                        help="serve a liveness probe, e.g. http://0.0.0.0:8080/healthz")
    parser.add_argument("--metrics-port", type=int, default=int(os.environ.get("NOVA_METRICS_PORT") or 0) or None,
                        help="serve Prometheus metrics on this port at /metrics ($NOVA_METRICS_PORT)")
    parser.add_argument("--status-interval", type=float, help="seconds between status updates")
    parser.add_argument("--leader-elect", action="store_true",
                        default=os.environ.get("NOVA_LEADER_ELECT", "").lower() in ("1", "true", "yes"),
                        help="lead through a Lease in $POD_NAMESPACE (for more than one replica; $NOVA_LEADER_ELECT)")
    parser.add_argument("--lease-name", help="the Lease's name (default nova-operator, $NOVA_LEASE_NAME)")
    parser.add_argument("--verbose", action="store_true")
    return parser


def namespaces(args: argparse.Namespace, env: dict[str, str] | None = None) -> list[str]:
    """[] means cluster-wide."""
    if args.all_namespaces:
        return []
    if args.namespace:
        return list(args.namespace)
    env = dict(os.environ if env is None else env)
    return [n.strip() for n in env.get("NOVA_WATCH_NAMESPACE", "").split(",") if n.strip()]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings.from_env(status_interval=args.status_interval)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        # kopf logs "Handler 'on_event' succeeded." for every watch event of every run; Nova logs
        # what it does itself (nova_operator.*), and kopf's warnings and errors still show
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    import nova_operator.handlers  # noqa: F401 - registers the handlers with kopf
    from nova_operator.metrics import METRICS

    if args.metrics_port:
        METRICS.serve(args.metrics_port)

    leadership = None
    if args.leader_elect:
        from nova_operator.kube import load_config
        from nova_operator.leadership import Leadership, LeaseSettings, health_while_waiting

        load_config()
        leadership = Leadership(LeaseSettings.from_env(args.lease_name))
        with health_while_waiting(args.liveness):
            leadership.acquire()
        leadership.keep()
    watch = namespaces(args)
    try:
        kopf.run(standalone=True, clusterwide=not watch, namespaces=watch, liveness_endpoint=args.liveness,
                 memo=kopf.Memo(settings=settings))
    finally:
        if leadership is not None:
            leadership.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
