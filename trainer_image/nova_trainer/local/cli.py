"""`nova`: the user's command, on a machine without a cluster.

  run       tune and refit a TrainingRun here (worker processes, SQLite in the output folder)
  predict   the refit model's signal for the latest bars, from the same data source
  validate  check a TrainingRun (the same models and rules as the API server) and its data
  show      the resolved spec with every default, as the operator stores it (run.json)
  symbols   what the bundled data holds, with date ranges
  crd       the generated CRD on stdout: kubectl apply -f <(nova crd)

Every module below is imported inside its command, so `nova validate` checks the spec before
anything heavy (pandas, XGBoost, Optuna) is loaded: a typo costs well under a second.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from nova.errors import run_command


def cmd_run(args) -> int:
    from nova.manifest import load_run
    from nova.spec import resolve

    run = resolve(load_run(args.manifest))  # a bad spec fails here, before the heavy imports
    from nova_trainer import logs
    from nova_trainer.local.runner import run_local

    logs.setup(args.log_level)
    if args.storage:
        os.environ["NOVA_STORAGE_URL"] = args.storage
    from nova.object_store import local_dir

    out = Path(local_dir(run, args.out))
    warm = Path(args.warm_start_from) if args.warm_start_from else None
    outcome = run_local(run, out, workers=args.workers, progress=not args.no_progress, warm_start_from=warm)
    return outcome.exit_code


def cmd_predict(args) -> int:
    from nova.manifest import load_run
    from nova.object_store import local_dir, model_root
    from nova.spec import resolve

    run = resolve(load_run(args.manifest))
    from nova_trainer.predict import predict, print_predictions

    frame = predict(run, args.symbol, model_root(run, local_dir(run, args.out)), args.last)
    print_predictions(frame, run.spec.target.kind)
    return 0


def cmd_validate(args) -> int:
    from nova.manifest import load_run

    run = load_run(args.manifest)
    spec = run.spec
    print(f"{args.manifest}: spec ok (TrainingRun {run.metadata.name}: {len(spec.data.symbols)} symbol(s), "
          f"data.source {spec.data.source})", flush=True)
    if args.spec_only:
        return 0
    from nova_trainer.local.datacheck import check_symbols

    problems = check_symbols(spec.data)
    for problem in dict.fromkeys(problems.values()):  # a refused bucket is one line, not one per symbol
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return 2
    print(f"{args.manifest}: data ok ({', '.join(spec.data.symbols)})")
    return 0


def cmd_show(args) -> int:
    from nova.manifest import load_run
    from nova.spec import resolve

    run = resolve(load_run(args.manifest))
    if args.output == "yaml":
        import yaml

        print(yaml.safe_dump(json.loads(run.to_json()), sort_keys=False, width=100), end="")
    else:
        print(run.to_json())
    return 0


def cmd_symbols(args) -> int:
    from nova_trainer.local.datacheck import describe_symbols

    rows = describe_symbols(args.source, args.uri)
    print(f"{'symbol':>8} {'first':>10} {'last':>10} {'bars':>6}  origin")
    for r in rows:
        print(f"{r.symbol:>8} {r.first:>10} {r.last:>10} {r.bars:>6}  {r.origin}")
    return 0


def cmd_crd(args) -> int:
    from nova.crd import render

    sys.stdout.write(render())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nova", description="Run and check TrainingRuns on this machine, without a cluster.",
        epilog="Start with: nova validate run.yaml, then nova run run.yaml (see README.md).")
    parser.add_argument("--log-level", default=os.environ.get("NOVA_LOG_LEVEL", "WARNING"))
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    p = sub.add_parser("run", help="run a TrainingRun here, without a cluster")
    p.add_argument("manifest", help="TrainingRun YAML")
    p.add_argument("--workers", type=int, help="override spec.tuning.workers")
    p.add_argument("--out", help="output folder (default: spec.output.uri or runs/<name>)")
    p.add_argument("--storage", help="SQLAlchemy URL of an Optuna storage (default: SQLite in the output "
                   "folder; or $NOVA_STORAGE_URL)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--warm-start-from", metavar="DIR", help="seed each study with the best trials of that "
                   "symbol in an earlier `nova run` folder (e.g. runs/<old>; tuning.warmStart.topK of them, "
                   "fitted to this search space)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("predict", help="print the refit model's signal for the latest bars (no server)")
    p.add_argument("manifest", help="TrainingRun YAML")
    p.add_argument("--symbol", required=True, help="one of data.symbols")
    p.add_argument("--last", type=int, help="only the last N bars (default: every bar)")
    p.add_argument("--out", help="the run's output folder (default: spec.output.uri or runs/<name>)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("validate", help="check a TrainingRun's spec and data without running it "
                       "(like kubectl apply --dry-run)")
    p.add_argument("manifest", help="TrainingRun YAML")
    p.add_argument("--spec-only", action="store_true", help="check the spec only, not the data")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("show", help="print the resolved spec with defaults (the operator's run.json)")
    p.add_argument("manifest", help="TrainingRun YAML")
    p.add_argument("-o", "--output", choices=("json", "yaml"), default="json")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("symbols", help="list the symbols a data source holds, with date ranges")
    p.add_argument("--source", choices=("bundled", "file"), default="bundled")
    p.add_argument("--uri", help="file: a folder of <symbol>.csv|.parquet (as data.uri)")
    p.set_defaults(func=cmd_symbols)

    p = sub.add_parser("crd", help="print the TrainingRun CRD (kubectl apply -f <(nova crd))")
    p.set_defaults(func=cmd_crd)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Ctrl-C must work even when started from a shell that ignores SIGINT (background jobs, CI).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    args = build_parser().parse_args(argv)
    return run_command(args.func, args, "\ninterrupted: finished trials are kept; run the same command "
                       "again to resume")


if __name__ == "__main__":
    sys.exit(main())
