"""Many workers on one study against PostgreSQL: peak database connections and errors.

N real `nova-trainer tune` processes (the command a worker pod runs) join one study on a real
PostgreSQL (Debian's server, started here on loopback, max_connections=300) and run tiny trials
until the study holds its budget, two ways side by side: each worker connecting to the database
(`direct`), and every worker talking gRPC to one Optuna storage proxy, the chart's own script
(charts/nova/files/optuna_grpc_proxy.py, pool 5 + 5 overflow), in front of it (`proxy`). A sampler
counts the study database's connections in `pg_stat_activity` every 0.1 s. Reported per way: peak
and mean connections, connections per worker, worker exit codes, errors in the workers' logs, FAIL
trials, the budget against what was run (overshoot bound: workers - 1), trials left RUNNING.

    python bench/load.py [--workers 50] [--trials 150] [--via direct|proxy|both]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table, write_result  # noqa: E402

from nova.config import load_resolved  # noqa: E402
from nova_trainer.tuning.budget import progress  # noqa: E402
from nova_trainer.tuning.storage import open_storage  # noqa: E402
from nova_trainer.tuning.study import open_study  # noqa: E402
from tests.conftest import small_run_manifest  # noqa: E402
from tests.support.optuna_proxy import free_port, start_proxy, stop  # noqa: E402
from tests.support.postgres import ConnectionSampler, start_postgres  # noqa: E402

ERROR_PATTERNS = ("Traceback", "too many clients", "ERROR", "error:", "OperationalError")


def one_way(pg, via: str, args: argparse.Namespace) -> tuple[dict, bool]:
    work = Path(tempfile.mkdtemp(prefix=f"nova-load-{via}-"))
    database = f"load_{via}"
    url = pg.create_database(database)
    manifest = small_run_manifest(name="load", trials=args.trials, workers=args.workers,
                                  model={"numBoostRound": 10, "earlyStoppingRounds": None},
                                  tuning={"heartbeatSeconds": args.heartbeat, "graceSeconds": args.grace})
    config = work / "run.yaml"
    config.write_text(yaml.safe_dump(manifest))
    run = load_resolved(config)
    open_study(run, "AAA", open_storage(url, 1, 4))  # studies first, as the operator does
    proxy = None
    worker_url = url
    if via == "proxy":
        port = free_port()
        proxy = start_proxy(url, port)
        worker_url = f"grpc://127.0.0.1:{port}"
    sampler = ConnectionSampler(pg, database)
    sampler.start()
    env = {**os.environ, "NOVA_STORAGE_URL": worker_url, "OMP_NUM_THREADS": "1"}
    t0 = time.monotonic()
    procs = []
    try:
        for i in range(args.workers):
            log = open(work / f"worker-{i}.log", "w")  # noqa: SIM115
            procs.append(subprocess.Popen([sys.executable, "-m", "nova_trainer.cli", "tune", "--config", str(config),
                                           "--worker", str(i), "--out", str(work / "out")],
                                          env=env, stdout=log, stderr=subprocess.STDOUT))
        codes = [p.wait(timeout=3600) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        proxy_log = stop(proxy) if proxy else ""
    wall = time.monotonic() - t0
    connections = sampler.finish()
    logs = [(work / f"worker-{i}.log").read_text(errors="replace") for i in range(args.workers)]
    errors = {pat: sum(text.count(pat) for text in logs) for pat in ERROR_PATTERNS}
    first_errors = [line for text in logs for line in text.splitlines()
                    if any(p in line for p in ERROR_PATTERNS)][:5]
    retries = sum(len(re.findall(r"retry \d+/\d+", text)) + text.count("storage error (") for text in logs)
    stale_takeovers = sum(text.count("was failed as stale by another worker") for text in logs)
    p = progress(__import__("optuna").load_study(study_name=run.study_name("AAA"), storage=open_storage(url, 1, 4)))
    result = {
        "via": via, "workers": args.workers, "trials_budget": args.trials, "wall_seconds": round(wall, 1),
        "worker_exit_codes": {str(c): codes.count(c) for c in sorted(set(codes))},
        "db_connections": {**connections, "peak_per_worker": round(connections["peak"] / args.workers, 2)},
        "errors_in_logs": errors, "first_error_lines": first_errors, "storage_retries_logged": retries,
        "stale_takeovers_logged": stale_takeovers,
        "study": {"complete": p.complete, "pruned": p.pruned, "failed": p.failed, "running": p.running,
                  "waiting": p.waiting, "finished": p.finished,
                  "overshoot": p.finished - args.trials, "overshoot_bound": args.workers - 1},
    }
    if proxy:
        result["proxy_errors_in_log"] = proxy_log.count("Traceback")
    ok = (set(codes) == {0} and p.running == 0 and 0 <= p.finished - args.trials <= args.workers - 1
          and errors["too many clients"] == 0)
    return result, ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=50)
    parser.add_argument("--trials", type=int, default=150)
    parser.add_argument("--via", choices=("direct", "proxy", "both"), default="both")
    parser.add_argument("--heartbeat", type=int, default=10, help="tuning.heartbeatSeconds (spec default 10)")
    parser.add_argument("--grace", type=int, default=30, help="tuning.graceSeconds (spec default 30)")
    parser.add_argument("--name", default="load", help="result file name under bench/results")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    pg = start_postgres()
    try:
        ways = ("direct", "proxy") if args.via == "both" else (args.via,)
        results, oks = {}, []
        for via in ways:
            results[via], ok = one_way(pg, via, args)
            oks.append(ok)
        max_connections = int(pg.psql("SHOW max_connections"))
    finally:
        pg.destroy()
    payload = {**results, "max_connections": max_connections, "heartbeat_seconds": args.heartbeat,
               "grace_seconds": args.grace, "load_average_at_end": os.getloadavg()}
    print(table(["via", "workers", "budget", "finished", "overshoot", "running left", "peak conns", "mean conns",
                 "exit codes", "wall s"],
                [[r["via"], r["workers"], r["trials_budget"], r["study"]["finished"], r["study"]["overshoot"],
                  r["study"]["running"], r["db_connections"]["peak"], r["db_connections"]["mean"],
                  r["worker_exit_codes"], r["wall_seconds"]] for r in results.values()]))
    if not args.no_write:
        print(f"wrote {write_result(args.name, payload)}")
    return 0 if all(oks) else 1


if __name__ == "__main__":
    sys.exit(main())
