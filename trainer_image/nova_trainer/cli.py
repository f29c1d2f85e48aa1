"""`nova-trainer`: the commands that run inside a worker pod (and under `nova run`).

  train   one symbol, fixed params: walk-forward metrics, refit, model + card
  tune    join each symbol's study and run trials until its budget is met
  refit   the best trial of each study, trained on the whole window
  predict the refit model's signal for the latest bars of the same source
  prep    build features ahead of the trainer into a shared folder (the pod's sidecar; prep.py)
  promote judge a schedule's new models against its promoted ones (promotion.py)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from nova.config import load_resolved
from nova.errors import NovaError, run_command
from nova_trainer import logs, timeline

log = logging.getLogger("nova_trainer")


def interrupt_on_signals() -> None:
    """Kubernetes stops pods with SIGTERM, a user with Ctrl-C: the running trial stops at its next
    boosting round and is re-queued (see `stopping`)."""
    from nova_trainer import stopping

    stopping.install()


def _out_dir(args, run) -> Path:
    from nova.object_store import local_dir

    return Path(local_dir(run, args.out))


def cmd_train(args) -> int:
    from nova_trainer.api import train_symbol

    run = load_resolved(args.config)
    tuned = json.loads(args.params) if args.params else {}
    from nova.object_store import model_root

    symbols = [args.symbol] if args.symbol else run.spec.data.symbols
    for symbol in symbols:
        card = train_symbol(run.spec, symbol, model_root(run, _out_dir(args, run)), tuned)
        metrics = " ".join(f"{k}={v:.4f}" for k, v in card["metrics"].items())
        print(f"{symbol}: {metrics} rounds={card['num_boost_round']} device={card['device']['used']}")
    return 0


def cmd_tune(args) -> int:
    from nova_trainer.sources import symbol_stream
    from nova_trainer.tuning.storage import open_storage, resolve_url
    from nova_trainer.tuning.worker import run_worker

    timeline.process_started("trainer")
    run = load_resolved(args.config)
    worker = args.worker if args.worker is not None else int(os.environ.get("JOB_COMPLETION_INDEX", "0"))
    out = _out_dir(args, run)
    storage = open_storage(resolve_url(out), run.spec.tuning.heartbeat_seconds, run.spec.tuning.grace_seconds)
    interrupt_on_signals()
    outcomes = run_worker(run, storage, worker, symbol_stream(run, args.shards))
    for o in outcomes:
        if o.error:
            print(f"{o.symbol}: skipped: {o.error}")
        elif (p := o.progress) is not None:
            print(f"{o.symbol}: worker {worker} ran {o.trials_run_here} trials; study has "
                  f"{p.complete} complete, {p.pruned} pruned, {p.failed} failed; best {p.best_value}")
    return 1 if any(o.error for o in outcomes) and not any(o.progress for o in outcomes) else 0


def cmd_refit(args) -> int:
    from nova.object_store import model_root
    from nova_trainer.model_card import status_evaluation
    from nova_trainer.refit import refit_symbol
    from nova_trainer.tuning.storage import open_storage, resolve_url

    run = load_resolved(args.config)
    out = _out_dir(args, run)
    out.mkdir(parents=True, exist_ok=True)
    root = model_root(run, out)
    if root != str(out):  # an object store: a refused bucket fails the Job now (exit 2), once
        from nova_trainer import store as stores

        stores.check_writable(stores.place(root, run.spec.output.object_store, role="output"))
    storage = open_storage(resolve_url(out), run.spec.tuning.heartbeat_seconds, run.spec.tuning.grace_seconds)
    summary: dict[str, dict[str, Any]] = {}
    for symbol in [args.symbol] if args.symbol else run.spec.data.symbols:
        try:
            card = refit_symbol(run, symbol, storage, root)
        except NovaError as exc:
            log.error("%s: not refitted: %s", symbol, exc)
            summary[symbol] = {"error": str(exc)}
            continue
        summary[symbol] = {"best_value": card["best_value"], "metrics": card["metrics"],
                           "model": card["model_file"], "evaluation": status_evaluation(card)}
        print(f"{symbol}: best {run.spec.tuning.metric}={card['best_value']:.4f} -> {card['model_uri']}")
    # compact: it travels in the termination message (4 KiB); 3 symbols with their evaluation take 1.6 KB
    (out / "summary.json").write_text(json.dumps(summary, separators=(",", ":")))
    return 0 if any("error" not in s for s in summary.values()) else 1


def cmd_predict(args) -> int:
    from nova.object_store import model_root
    from nova_trainer.predict import predict, print_predictions

    run = load_resolved(args.config)
    frame = predict(run, args.symbol, model_root(run, _out_dir(args, run)), args.last)
    print_predictions(frame, run.spec.target.kind)
    return 0


def cmd_prep(args: argparse.Namespace) -> int:
    """SIGTERM (or Ctrl-C) sets a flag that `produce` checks before each symbol and each wait:
    the symbol being written is either finished or left as an invisible temp file."""
    import time

    from nova_trainer import stopping
    from nova_trainer.prep import Stop, produce

    timeline.process_started("prep")
    run = load_resolved(args.config)
    folder = Path(args.out)
    stopping.install()
    try:
        outcome = produce(run, folder, stop_check=stopping.requested)
        failed = {s: o for s, o in outcome.items() if o != "ready"}
        print(f"prep: {len(outcome) - len(failed)} symbol(s) ready, {len(failed)} failed", flush=True)
        while args.linger and not stopping.requested():  # a native sidecar must outlive the trainer
            time.sleep(0.5)
    except (Stop, KeyboardInterrupt):
        pass
    for tmp in folder.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
    if stopping.requested():
        log.info("prep: stopped by signal")
    return 0


def cmd_promote(args) -> int:
    """The decision goes to --result (the pod's termination message) as compact JSON; exit 0 even
    when nothing is promoted: keeping the incumbent is a decision, not a failure."""
    from nova_trainer.promotion import compact, promote

    run = load_resolved(args.config)
    text = args.request if args.request.lstrip().startswith("{") else Path(args.request).read_text()
    request = json.loads(text)
    document = promote(run, request)
    for symbol, decision in document["symbols"].items():
        print(f"{symbol}: {'promoted' if decision['promoted'] else 'kept'}: {decision['reason']}")
    if args.result:
        Path(args.result).write_text(compact(document))
    return 0 if any("candidate" in d for d in document["symbols"].values()) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nova-trainer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log-level", default=os.environ.get("NOVA_LOG_LEVEL", "INFO"))
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", required=True, help="run.json from the operator, or a TrainingRun YAML")
        p.add_argument("--out", help="output folder (default: spec.output.uri or runs/<name>)")

    p = sub.add_parser("train", help="train one symbol with fixed params")
    common(p)
    p.add_argument("--symbol")
    p.add_argument("--params", help='JSON of XGBoost params, e.g. \'{"max_depth": 3}\'')
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("tune", help="run trials until each study holds its budget")
    common(p)
    p.add_argument("--worker", type=int, help="worker index (default $JOB_COMPLETION_INDEX or 0)")
    p.add_argument("--shards", help="folder where `prep` writes features; default: build in-process")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("refit", help="train the best parameters on the whole window")
    common(p)
    p.add_argument("--symbol")
    p.set_defaults(func=cmd_refit)

    p = sub.add_parser("promote", help="judge a schedule's new models against its promoted ones")
    p.add_argument("--config", required=True, help="run.json of the run whose models are judged")
    p.add_argument("--request", required=True, help="JSON (or a file holding it): schedule, outputRoot, "
                   "candidateDir, incumbents, promotion")
    p.add_argument("--result", help="write the decision here as JSON (a termination message path)")
    p.set_defaults(func=cmd_promote)

    p = sub.add_parser("predict", help="the refit model's signal for the latest bars (no server needed)")
    common(p)
    p.add_argument("--symbol", required=True)
    p.add_argument("--last", type=int, help="only the last N bars")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("prep", help="build features ahead of the trainer into a shared folder")
    p.add_argument("--config", required=True, help="run.json from the operator, or a TrainingRun YAML")
    p.add_argument("--out", required=True, help="shared folder (an emptyDir in a pod)")
    p.add_argument("--linger", action="store_true", help="stay alive after the last symbol until SIGTERM "
                   "(for a native sidecar)")
    p.set_defaults(func=cmd_prep)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.setup(args.log_level)
    return run_command(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
