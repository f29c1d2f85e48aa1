"""Run a TrainingRun on this machine: studies first, then N worker processes sharing the storage,
live progress, refit per symbol, a final table and an HTML report. Ctrl-C stops the workers (their
running trials are re-queued) and a second `nova run` resumes the studies where they were."""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import sys
import threading
from pathlib import Path

import optuna

from nova.errors import NovaError
from nova.secrets import host_of
from nova.spec import ResolvedRun
from nova_trainer.tuning.storage import STORAGE_URL_ENV, open_storage, resolve_url
from nova_trainer.tuning.study import open_study
from nova_trainer.tuning.warm_start import previous_run, seed

log = logging.getLogger(__name__)


def _worker_main(run_json: str, url: str, index: int, out_dir: str, shards: str | None) -> None:
    """Entry point of one worker process (spawned: a clean interpreter, like a pod)."""
    from nova_trainer import logs
    from nova_trainer.cli import interrupt_on_signals
    from nova_trainer.sources import symbol_stream
    from nova_trainer.tuning.worker import run_worker

    log_path = Path(out_dir) / "logs" / f"worker-{index}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as stream:
        sys.stderr = stream  # anything a library prints goes to the worker's log, not the terminal
        logs.setup("INFO", stream, prefix=f"worker-{index} ")
        interrupt_on_signals()
        run = ResolvedRun.from_json(run_json)
        try:
            storage = open_storage(url, run.spec.tuning.heartbeat_seconds, run.spec.tuning.grace_seconds)
            # Local workers share one prep folder, so none of them may delete a shard.
            run_worker(run, storage, index, symbol_stream(run, shards, delete=False))
        except KeyboardInterrupt:
            logging.getLogger(__name__).info("interrupted; running trials re-queued")
            sys.exit(130)
        except NovaError as exc:
            logging.getLogger(__name__).error("%s", exc)
            sys.exit(2)


def _prep_main(run_json: str, folder: str, out_dir: str) -> None:
    """The prep producer as its own process: one feature build per symbol for all workers."""
    from nova_trainer import logs
    from nova_trainer.cli import interrupt_on_signals
    from nova_trainer.prep import produce

    with open(Path(out_dir) / "logs" / "prep.log", "a") as stream:
        logs.setup("INFO", stream, prefix="prep ")
        run = ResolvedRun.from_json(run_json)
        interrupt_on_signals()
        try:
            produce(run, Path(folder), max_ahead=len(run.spec.data.symbols))
        except KeyboardInterrupt:
            sys.exit(130)


def run_local(run: ResolvedRun, out_dir: Path, workers: int | None = None, progress: bool = True,
              report: bool = True, warm_start_from: Path | None = None) -> dict:
    """Tune and refit every symbol; return {symbol: card summary}. `warm_start_from`, the folder of
    a previous local run, seeds each new study with its best trials (nova.warm_start)."""
    from nova_trainer.local.progress import ProgressBoard
    from nova_trainer.local.report import write_report
    from nova_trainer.refit import refit_symbol

    out_dir.mkdir(parents=True, exist_ok=True)
    url = resolve_url(out_dir)
    where = "embedded SQLite " + str(out_dir / "optuna.db") if url.startswith("sqlite") else host_of(url)
    n_workers = workers or run.spec.tuning.workers
    print(f"nova run {run.name}: {len(run.spec.data.symbols)} symbol(s), {run.spec.tuning.trials} trials each, "
          f"{n_workers} worker(s), storage {where}, output {out_dir}", flush=True)
    (out_dir / "run.json").write_text(run.to_json())
    storage = open_storage(url, run.spec.tuning.heartbeat_seconds, run.spec.tuning.grace_seconds)
    source = previous_run(warm_start_from) if warm_start_from is not None else None
    source_storage = optuna.storages.RDBStorage(source[1]) if source is not None else None
    for symbol in run.spec.data.symbols:
        study = open_study(run, symbol, storage)
        if source is not None and source_storage is not None:
            seed(run, study, symbol, source_storage, source[0])

    ctx = mp.get_context("spawn")
    (out_dir / "logs").mkdir(exist_ok=True)
    shards = None
    procs = []
    if n_workers > 1:  # one prep process feeds every worker through a shared folder, as in a pod
        shards = str(out_dir / "features")
        _clear_markers(Path(shards))
        procs.append(ctx.Process(target=_prep_main, name="nova-prep", args=(run.to_json(), shards, str(out_dir))))
    procs += [ctx.Process(target=_worker_main, name=f"nova-worker-{i}",
                          args=(run.to_json(), url, i, str(out_dir), shards)) for i in range(n_workers)]
    for p in procs:
        p.start()
    board = ProgressBoard(run, storage, enabled=progress)
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while any(p.is_alive() for p in procs) and not stop.is_set():
            board.update()
            stop.wait(1.0)
        interrupted = stop.is_set()
        if interrupted:
            # A terminal's Ctrl-C reached the workers too; give them a moment to stop at their
            # next boosting round, then tell the ones that did not hear it.
            for p in procs:
                p.join(timeout=3)
            for p in procs:
                if p.is_alive():
                    os.kill(p.pid, signal.SIGTERM)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for p in procs:
            p.join()
        snapshot = board.update()
        board.close()
    if interrupted:
        raise KeyboardInterrupt
    failed_workers = [p.name for p in procs if p.exitcode not in (0, None)]
    if failed_workers:
        log.warning("worker(s) %s exited with errors; see %s", failed_workers, out_dir / "logs")

    results: dict[str, dict] = {}
    for symbol in run.spec.data.symbols:
        if snapshot[symbol].complete == 0:
            results[symbol] = {"error": "no complete trial (see logs)"}
            continue
        try:
            card = refit_symbol(run, symbol, storage, out_dir)
        except NovaError as exc:
            results[symbol] = {"error": str(exc)}
            continue
        results[symbol] = {"progress": snapshot[symbol], "card": card}
    _print_table(run, results)
    if report:
        path = write_report(run, storage, out_dir)
        print(f"report: {path}")
    return results


def _clear_markers(folder: Path) -> None:
    """A new local run rebuilds its features (data or code may have changed since the last one)."""
    if folder.exists():
        for path in folder.iterdir():
            path.unlink()


def _print_table(run: ResolvedRun, results: dict[str, dict]) -> None:
    metric = run.spec.tuning.metric
    header = f"{'symbol':>8} {'trials':>6} {'pruned':>6} {'best ' + metric:>12} {'auc':>6} {'sharpe':>7} {'hit':>6} {'rounds':>6}  model"
    print("\n" + header)
    print("-" * len(header))
    for symbol, r in results.items():
        if "error" in r:
            print(f"{symbol:>8}  {r['error']}")
            continue
        p, card = r["progress"], r["card"]
        m = card["metrics"]
        print(f"{symbol:>8} {p.finished:>6} {p.pruned:>6} {card['best_value']:>12.4f} {m.get('auc', float('nan')):>6.3f} "
              f"{m['sharpe']:>7.2f} {m['hit_rate']:>6.3f} {card['num_boost_round']:>6}  {card['model_file']}")
    sys.stdout.flush()
