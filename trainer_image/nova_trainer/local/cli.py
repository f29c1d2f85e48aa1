"""`nova`: the user's command. `nova run run.yaml` runs a TrainingRun on this machine; `nova crd`
prints the generated CRD."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from nova.errors import run_command


def cmd_run(args) -> int:
    from nova.manifest import load_run
    from nova.spec import resolve
    from nova_trainer import logs
    from nova_trainer.local.runner import run_local

    logs.setup(args.log_level)
    run = resolve(load_run(args.manifest))
    if args.storage:
        os.environ["NOVA_STORAGE_URL"] = args.storage
    out = Path(args.out or run.spec.output.uri or f"runs/{run.name}")
    results = run_local(run, out, workers=args.workers, progress=not args.no_progress)
    return 0 if any("error" not in r for r in results.values()) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nova", description=__doc__)
    parser.add_argument("--log-level", default=os.environ.get("NOVA_LOG_LEVEL", "WARNING"))
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run a TrainingRun here, without a cluster")
    p.add_argument("manifest", help="TrainingRun YAML")
    p.add_argument("--workers", type=int, help="override spec.tuning.workers")
    p.add_argument("--out", help="output folder (default: spec.output.uri or runs/<name>)")
    p.add_argument("--storage", help="SQLAlchemy URL of an Optuna storage (default: SQLite in the output "
                   "folder; or $NOVA_STORAGE_URL)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Ctrl-C must work even when started from a shell that ignores SIGINT (background jobs, CI).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    args = build_parser().parse_args(argv)
    return run_command(args.func, args, "\ninterrupted: finished trials are kept; run the same command "
                       "again to resume")


if __name__ == "__main__":
    sys.exit(main())
