"""Run a TrainingRun on this machine: studies first, then N worker processes sharing the storage,
live progress, refit per symbol, a final table and an HTML report. Ctrl-C stops the workers (their
running trials are re-queued) and a second `nova run` resumes the studies where they were."""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import signal
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import optuna

from nova.errors import DataError, NovaError, StorageError
from nova.secrets import host_of, mask
from nova.spec import ResolvedRun
from nova_trainer.tuning.storage import open_storage, resolve_url
from nova_trainer.tuning.study import open_study
from nova_trainer.tuning.warm_start import previous_run, seed

log = logging.getLogger(__name__)


def _worker_main(run_json: str, url: str, index: int, out_dir: str, shards: str | None) -> None:
    """Entry point of one worker process (spawned: a clean interpreter, like a pod).

    The log file stays open for the life of the process (never closed under `sys.stderr`), so a
    crash's traceback reaches it; a one-line reason goes to `worker-<i>.crash` for the terminal."""
    from nova_trainer import logs
    from nova_trainer.cli import interrupt_on_signals
    from nova_trainer.sources import symbol_stream
    from nova_trainer.tuning.worker import run_worker

    logs_dir = Path(out_dir) / "logs"
    stream = _redirect_stderr(logs_dir / f"worker-{index}.log")
    logs.setup("INFO", stream, prefix=f"worker-{index} ")
    worker_log = logging.getLogger(__name__)
    try:
        interrupt_on_signals()
        run = ResolvedRun.from_json(run_json)
        storage = open_storage(url, run.spec.tuning.heartbeat_seconds, run.spec.tuning.grace_seconds)
        # Local workers share one prep folder, so none of them may delete a shard.
        run_worker(run, storage, index, symbol_stream(run, shards, delete=False))
    except KeyboardInterrupt:
        worker_log.info("interrupted; running trials re-queued")
        sys.exit(130)
    except NovaError as exc:
        worker_log.error("%s", exc)
        _write_crash(logs_dir, index, str(exc))
        sys.exit(2)
    except BaseException as exc:
        if isinstance(exc, SystemExit):
            raise
        worker_log.exception("worker %d crashed", index)
        _write_crash(logs_dir, index, f"{type(exc).__name__}: {exc}")
        sys.exit(1)
    finally:
        stream.flush()


def _redirect_stderr(path: Path):
    """Point the process's stderr, Python's and the C libraries', at the worker's log for good."""
    path.parent.mkdir(parents=True, exist_ok=True)
    stream = open(path, "a", buffering=1)  # noqa: SIM115 - open until the process exits, on purpose
    os.dup2(stream.fileno(), 2)
    sys.stderr = stream
    return stream


def crash_path(logs_dir: Path, index: int) -> Path:
    return logs_dir / f"worker-{index}.crash"


def _write_crash(logs_dir: Path, index: int, reason: str) -> None:
    first = reason.strip().splitlines()[0] if reason.strip() else "unknown error"
    crash_path(logs_dir, index).write_text(mask(first)[:500])


def _prep_main(run_json: str, folder: str, out_dir: str) -> None:
    """The prep producer as its own process: one feature build per symbol for all workers."""
    from nova_trainer import logs
    from nova_trainer.cli import interrupt_on_signals
    from nova_trainer.prep import produce

    stream = _redirect_stderr(Path(out_dir) / "logs" / "prep.log")
    logs.setup("INFO", stream, prefix="prep ")
    run = ResolvedRun.from_json(run_json)
    interrupt_on_signals()
    try:
        produce(run, Path(folder), max_ahead=len(run.spec.data.symbols))
    except KeyboardInterrupt:
        sys.exit(130)
    finally:
        stream.flush()


@dataclass
class LocalRun:
    """What `nova run` did: per-symbol results and the processes that did not end well."""

    results: dict[str, dict] = field(default_factory=dict)
    crashed: dict[str, str] = field(default_factory=dict)  # process name -> one-line reason

    @property
    def exit_code(self) -> int:
        """0 only when every symbol has a model and no process crashed."""
        ok = self.results and all("error" not in r for r in self.results.values())
        return 0 if ok and not self.crashed else 1


def run_local(run: ResolvedRun, out_dir: Path, workers: int | None = None, progress: bool = True,
              report: bool = True, warm_start_from: Path | None = None) -> LocalRun:
    """Tune and refit every symbol: the symbols' data is checked first, so a wrong symbol or path
    stops the run before any process starts, with the reason on the terminal. `warm_start_from`,
    the folder of a previous local run, seeds each new study with its best trials (nova.warm_start)."""
    from nova.object_store import model_root
    from nova_trainer.local.datacheck import check_symbols
    from nova_trainer.local.progress import ProgressBoard
    from nova_trainer.local.report import write_report
    from nova_trainer.refit import refit_symbol

    source = previous_run(warm_start_from) if warm_start_from is not None else None  # before any file is made
    _writable(out_dir)
    root = model_root(run, out_dir)
    url = resolve_url(out_dir)
    where = f"embedded SQLite {out_dir / 'optuna.db'}" if url.startswith("sqlite") else host_of(url)
    n_workers = workers or run.spec.tuning.workers
    print(f"nova run {run.name}: {len(run.spec.data.symbols)} symbol(s), {run.spec.tuning.trials} trials each, "
          f"{n_workers} worker(s), storage {where}, output {out_dir}"
          + (f", models {root}" if root != str(out_dir) else ""), flush=True)
    problems = check_symbols(run.spec.data)
    if problems:
        raise DataError("\n".join(dict.fromkeys(problems.values()))
                        + "\nfix data.symbols or data.uri; `nova symbols` lists the bundled data")
    if root != str(out_dir):  # an object store: a refused bucket stops the run now, not after tuning
        from nova_trainer import store as stores

        stores.check_writable(stores.place(root, run.spec.output.object_store, role="output"))
    (out_dir / "run.json").write_text(run.to_json())
    storage = open_storage(url, run.spec.tuning.heartbeat_seconds, run.spec.tuning.grace_seconds)
    source_storage = optuna.storages.RDBStorage(source[1]) if source is not None else None
    for symbol in run.spec.data.symbols:
        study = open_study(run, symbol, storage)
        if source is not None and source_storage is not None:
            seed(run, study, symbol, source_storage, source[0])

    ctx = mp.get_context("spawn")
    logs_dir = out_dir / "logs"
    logs_dir.mkdir(exist_ok=True)
    shards = None
    procs = []
    if n_workers > 1:  # one prep process feeds every worker through a shared folder, as in a pod
        shards = str(out_dir / "features")
        _clear_markers(Path(shards))
        procs.append(ctx.Process(target=_prep_main, name="prep", args=(run.to_json(), shards, str(out_dir))))
    for i in range(n_workers):
        crash_path(logs_dir, i).unlink(missing_ok=True)
        procs.append(ctx.Process(target=_worker_main, name=f"worker-{i}",
                                 args=(run.to_json(), url, i, str(out_dir), shards)))
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
                if p.is_alive() and p.pid is not None:
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
    outcome = LocalRun(crashed=_crashes(procs, logs_dir))
    for name, reason in outcome.crashed.items():
        print(f"error: {name} died: {reason} (log: {logs_dir / (name + '.log')})", file=sys.stderr, flush=True)

    for symbol in run.spec.data.symbols:
        if snapshot[symbol].complete == 0:
            outcome.results[symbol] = {"error": _why_no_trial(symbol, shards, logs_dir)}
            continue
        try:
            card = refit_symbol(run, symbol, storage, root)
        except NovaError as exc:
            outcome.results[symbol] = {"error": str(exc)}
            continue
        outcome.results[symbol] = {"progress": snapshot[symbol], "card": card}
    _print_table(run, outcome.results)
    if report:
        path = write_report(run, storage, out_dir)
        print(f"report: {path}")
    return outcome


def _writable(out_dir: Path) -> None:
    """Say which path cannot be written, once, instead of a traceback or a storage retry loop."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".nova-write-check-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise NovaError(f"output folder {out_dir} cannot be written ({exc.strerror}); choose another with "
                        "--out or fix its permissions") from None
    db = out_dir / "optuna.db"
    for path in (db, db.with_name("optuna.db-wal"), db.with_name("optuna.db-shm")):
        if path.exists() and not os.access(path, os.R_OK | os.W_OK):
            raise StorageError(f"the Optuna storage {path} cannot be written (permission denied); fix its "
                               "permissions, or use another --out or --storage")


def _crashes(procs: list, logs_dir: Path) -> dict[str, str]:
    """{process name: one-line reason} for every process that did not exit 0."""
    out = {}
    for p in procs:
        if p.exitcode in (0, None):
            continue
        crash = logs_dir / f"{p.name}.crash"
        if crash.exists():
            out[p.name] = crash.read_text().strip()
        elif p.exitcode < 0:
            out[p.name] = f"killed by signal {signal.Signals(-p.exitcode).name}"
        else:
            out[p.name] = f"exit code {p.exitcode}"
    return out


def _why_no_trial(symbol: str, shards: str | None, logs_dir: Path) -> str:
    """The real reason a symbol has no trial, when prep recorded one, rather than 'see logs'."""
    if shards:
        failed = Path(shards) / f"{symbol}.failed"
        if failed.exists():
            try:
                return "prep failed: " + json.loads(failed.read_text()).get("reason", "unknown")
            except ValueError:
                pass
    return f"no complete trial (see {logs_dir})"


def _clear_markers(folder: Path) -> None:
    """A new local run rebuilds its features (data or code may have changed since the last one)."""
    if folder.exists():
        for path in folder.iterdir():
            path.unlink()


def _print_table(run: ResolvedRun, results: dict[str, dict]) -> None:
    """One line per symbol: the tuning metric, then what a quant asks next (net Sharpe after
    evaluation.costBps, DSR against the expected best of as many noise trials, PBO, the holdout)."""
    metric = run.spec.tuning.metric
    header = (f"{'symbol':>8} {'trials':>6} {'pruned':>6} {'trial':>5} {metric:>8} {'sharpe':>7} {'net':>6} "
              f"{'B&H':>6} {'hit':>6} {'DSR':>5} {'E[max]':>6} {'PBO':>5} {'hold.net':>8}  model")
    print("\n" + header)
    print("-" * len(header))
    notes = []
    for symbol, r in results.items():
        if "error" in r:
            print(f"{symbol:>8}  {r['error']}")
            continue
        p, card = r["progress"], r["card"]
        m = card["metrics"]
        ev = card.get("evaluation") or {}
        hold = (card.get("holdout") or {}).get("metrics") or {}
        value = card.get("selected_value", card["best_value"])
        print(f"{symbol:>8} {p.finished:>6} {p.pruned:>6} {card.get('selected_trial', card['best_trial']):>5} "
              f"{value:>8.4f} {ev.get('sharpe_gross', m['sharpe']):>7.2f} {_num(ev.get('sharpe_net'), 6, 2)} "
              f"{_num(ev.get('buy_hold_sharpe'), 6, 2)} {ev.get('hit_rate', m['hit_rate']):>6.3f} "
              f"{_num(ev.get('dsr'), 5, 2)} {_num(ev.get('expected_max_sharpe'), 6, 2)} {_num(ev.get('pbo'), 5, 2)} "
              f"{_num(hold.get('sharpe_net'), 8, 2)}  {card['model_file']}")
        if ev.get("note"):
            notes.append(f"{symbol}: {ev['note']}")
    print(f"Sharpe ratios annualised over every walk-forward test bar; net of {run.spec.evaluation.cost_bps:g} bp "
          "per unit of turnover; DSR = P(true Sharpe > 0) given the trials, E[max] = the best Sharpe "
          "expected from as many trials of noise; hold.net = the untouched holdout, scored once.")
    for note in notes:
        print(note)
    sys.stdout.flush()


def _num(value: float | None, width: int, digits: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"
