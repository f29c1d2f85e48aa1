"""The operator under 200 TrainingRuns applied at once.

On the test control plane of tests/cluster (etcd, kube-apiserver, kube-controller-manager,
kube-scheduler built from upstream, kwok CPU nodes) with a real PostgreSQL for the studies,
`nova-operator` runs as a subprocess watching one namespace. N small CPU runs (one symbol, one
worker, tiny requests; their worker pods go to the kwok CPU nodes and stay Running) are created
together from a pool of client threads. Recorded per run:

- apply -> worker Job created (the operator's log, its own clock, ms) and seen by a client watch;
- apply -> first status decided (the operator's log) and seen by a client (status.phase set, polled
  with a LIST every 0.5 s).

The operator's resident memory (psutil, its process and children) is sampled every 0.1 s from
start to the end of a hold period with every run live (its status timers keep passing over all of
them), giving the peak.

    python bench/operator_scale.py [--runs 200] [--hold 60] [--status-interval 10] [--poll-interval 0.5]
                                   [--operator-log FILE] [--apiserver-profile FILE]

The API server's write requests from the first apply until every run is live are counted from its
own metrics (apiserver_request_total), so a change that saves writes per run shows as a number;
--apiserver-profile records where its CPU went (go tool pprof -top FILE).

The operator-log times are the primary figures (apply_to_job_*, apply_to_status_*); the client-side
ones (watch_seen) add the API server's delay in serving them (its watch cache lagged far behind etcd
on the loaded machine: the 504 "Too large resource version" restarts printed then). The load average
at start and end is recorded: on a shared 2-core machine the control plane, PostgreSQL and the
operator compete for the same cores.

The operator leads through a Lease as the chart runs it (--leader-elect; --no-leader-elect to compare).
Targets (issue 20): Nova's apply -> Job p95 at most 1.3 x the floor's, measured side by side in this one
command (the absolute p95 on two shared cores is set by the machine), and operator peak RSS < 250 MB.
Writes bench/results/operator_scale.json (keys apply_to_job_p95_over_floor, apply_to_job_p95_s,
operator_peak_rss_mb, floor, ...).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table, write_result  # noqa: E402

from tests.cluster import controlplane  # noqa: E402
from tests.operator.conftest import apply_crd  # noqa: E402
from tests.support.postgres import ConnectionSampler, start_postgres  # noqa: E402

sys.path.insert(0, str(ROOT / "operator"))
from nova_operator.settings import DEFAULT_HANDLER_THREADS  # noqa: E402

GROUP, VERSION, PLURAL = "nova.dev", "v1alpha1", "trainingruns"
NAMESPACE = "bench"


def run_manifest(i: int) -> dict:
    tiny = {"requests": {"cpu": "10m", "memory": "16Mi"}}
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainingRun", "metadata": {"name": f"r{i:03d}"},
            "spec": {"data": {"source": "synthetic", "symbols": ["AAA"], "bars": 900},
                     "features": {"set": "minimal"},
                     "validation": {"walkForward": {"folds": 2, "testSize": 80, "gap": 1, "minTrainSize": 300}},
                     "tuning": {"trials": 4, "workers": 1, "storage": {"secretRef": {"name": "optuna", "key": "url"}}},
                     "gpu": {"count": 0},
                     "resources": {"trainer": tiny, "prep": tiny}}}


LOG_TIME = r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) "


def operator_times(text: str) -> tuple[dict[str, float], dict[str, float]]:
    """From the operator's log (Python logging, local time with ms): when it created each run's
    worker Job ("created Job bench/r007-workers") and decided each run's first status
    ("bench/r007: Preparing: New -> Preparing: ...", logged as the status patch is handed to kopf)."""
    import datetime as dt
    import re

    made, decided = {}, {}
    job = re.compile(LOG_TIME + rf".*created Job {NAMESPACE}/(\S+)-workers$")
    first = re.compile(LOG_TIME + rf".*nova_operator.handlers: {NAMESPACE}/([^:]+): \w+: New -> ")
    for line in text.splitlines():
        for pattern, into in ((job, made), (first, decided)):
            m = pattern.match(line)
            if m:
                t = dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
                into.setdefault(m.group(2), t)
    return made, decided


def api_writes(cp) -> dict[str, int]:
    """The API server's count of write requests so far, by "VERB resource[/subresource] code"."""
    import re

    counts: dict[str, int] = {}
    text = cp.kubectl("get", "--raw", "/metrics").stdout
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
        if labels.get("verb") in ("GET", "LIST", "WATCH"):
            continue
        resource = labels.get("resource", "") + (f"/{labels['subresource']}" if labels.get("subresource") else "")
        key = f"{labels.get('verb')} {resource} {labels.get('code')}"
        counts[key] = counts.get(key, 0) + int(float(line.rsplit(" ", 1)[1]))
    return counts


def bench_namespace(cp, pool_size: int):
    """Create the bench namespace, wait for its default ServiceAccount (pods need it), and return
    an API client with `pool_size` connections."""
    import kubernetes

    cp.kubectl("create", "namespace", NAMESPACE)
    deadline = time.monotonic() + 30
    while cp.get(f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/default")[0] != 200:
        if time.monotonic() > deadline:
            raise RuntimeError("no default ServiceAccount")
        time.sleep(0.1)
    cfg = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=str(cp.kubeconfig), client_configuration=cfg)
    cfg.connection_pool_maxsize = pool_size
    return kubernetes.client.ApiClient(cfg)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


class RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        import psutil

        self.proc = psutil.Process(pid)
        self.stop = threading.Event()
        self.peak = 0
        self.samples: list[tuple[float, int]] = []

    def rss(self) -> int:
        import psutil

        total = 0
        try:
            total = self.proc.memory_info().rss
            for child in self.proc.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.NoSuchProcess:
                    pass
        except psutil.NoSuchProcess:
            pass
        return total

    def run(self) -> None:
        while not self.stop.is_set():
            value = self.rss()
            self.peak = max(self.peak, value)
            self.samples.append((time.monotonic(), value))
            self.stop.wait(0.1)


def cpu_seconds(operator_pid: int) -> dict[str, float]:
    """CPU time (user + system) used so far by each part on this machine, by name: the control plane
    binaries, PostgreSQL (all its processes), the operator (with children) and this bench."""
    import psutil

    by_name: dict[str, float] = {}
    parts = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "postgres")
    operator = {operator_pid}
    try:
        operator |= {c.pid for c in psutil.Process(operator_pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        pass
    for proc in psutil.process_iter(["pid", "name", "cpu_times"]):
        times = proc.info["cpu_times"]
        if times is None:
            continue
        name = proc.info["name"] or ""
        part = ("operator" if proc.info["pid"] in operator else "bench client" if proc.info["pid"] == os.getpid()
                else next((p for p in parts if name.startswith(p)), None))
        if part:
            by_name[part] = by_name.get(part, 0.0) + times.user + times.system
    return by_name


def watch(list_fn, seen: dict[str, float], stop: threading.Event, on_event=None, **kwargs) -> None:
    from kubernetes import watch as kwatch

    while not stop.is_set():
        w = kwatch.Watch()
        try:
            for ev in w.stream(list_fn, timeout_seconds=30, **kwargs):
                t = time.monotonic()
                obj = ev["object"]
                name = obj["metadata"]["name"] if isinstance(obj, dict) else obj.metadata.name
                if on_event is not None:
                    on_event(name, obj, t)
                elif ev["type"] == "ADDED":
                    seen.setdefault(name, t)
                if stop.is_set():
                    w.stop()
                    break
        except Exception as exc:  # noqa: BLE001 - re-watch
            if not stop.is_set():
                print(f"watch restarted: {exc}", file=sys.stderr)
                time.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--hold", type=float, default=60, help="seconds to keep every run live after the last Job")
    parser.add_argument("--status-interval", type=float, default=10, help="the operator's status timer (default 10 s)")
    parser.add_argument("--clients", type=int, default=16, help="client threads creating the runs")
    parser.add_argument("--cold", action="store_true", help="no warm-up run before the burst")
    parser.add_argument("--poll-interval", type=float, default=0.5,
                        help="seconds between the client's LISTs of the runs (it loads the API server too)")
    parser.add_argument("--profile", help="record the operator with py-spy into this file (speedscope JSON; "
                        "py-spy --gil: it samples the thread holding the GIL, so where the Python CPU goes)")
    parser.add_argument("--operator-log", help="keep the operator's log in this file")
    parser.add_argument("--apiserver-profile", help="write a 10 s CPU profile of the API server from the first "
                        "apply here (pprof; starts the control plane with NOVA_APISERVER_PROFILING=1)")
    parser.add_argument("--no-floor", action="store_true",
                        help="skip the floor: the same runs on a fresh control plane with the bare controller")
    parser.add_argument("--no-leader-elect", dest="leader_elect", action="store_false",
                        help="run the operator without leader election (the chart runs it with)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    result = measure(args, "nova")
    report(args, result)
    if not args.no_floor:
        floor = measure(args, "floor")
        result["floor"] = {k: floor[k] for k in (
            "apply_span_s", "apply_to_job_p50_s", "apply_to_job_p95_s", "apply_to_job_max_s", "created_to_job_p50_s",
            "created_to_job_p95_s", "all_runs_live_s", "jobs_total", "duplicate_jobs", "api_writes_until_all_live",
            "cpu_s_until_all_live",
            "load_average_at_start")}
        result["floor"]["controller"] = "bench/_floor_controller.py: watch + Nova's builders + 2 POSTs, nothing else"
        ratio = result["apply_to_job_p95_s"] / floor["apply_to_job_p95_s"]
        result["apply_to_job_p95_over_floor"] = round(ratio, 3)
        result["meets_targets"] = ratio <= RATIO_TARGET and result["operator_peak_rss_mb"] < RSS_TARGET_MB
        print()
        print(table(["apply -> worker Job created", "p50 (s)", "p95 (s)", "all runs live (s)"], [
            ["nova-operator", result["apply_to_job_p50_s"], result["apply_to_job_p95_s"], result["all_runs_live_s"]],
            ["floor: bare controller, same builders, 2 POSTs", floor["apply_to_job_p50_s"],
             floor["apply_to_job_p95_s"], floor["all_runs_live_s"]],
            ["nova / floor", "", f"{result['apply_to_job_p95_over_floor']} (target <= {RATIO_TARGET})", ""]]))
        print()
        print(table(["CPU until every run is live (s)", "with nova-operator", "with the floor"],
                    [[k, result["cpu_s_until_all_live"].get(k, ""), floor["cpu_s_until_all_live"].get(k, "")]
                     for k in result["cpu_s_until_all_live"]]))
    if not args.no_write:
        print(f"\nwrote {write_result('operator_scale', result)}")
    return 0 if result["meets_targets"] and result["duplicate_jobs"] == 0 else 1


RATIO_TARGET = 1.3
RSS_TARGET_MB = 250


def report(args: argparse.Namespace, r: dict) -> None:
    """The tables for one measurement of the operator."""
    w = r["watch_seen"]
    rows = [
        ["apply -> worker Job created (operator log)", r["apply_to_job_p50_s"], r["apply_to_job_p95_s"],
         "<= 1.3 x the floor's (p95)"],
        ["  of which: the create request itself (until the API server answers)",
         r["create_request_p50_s"], r["create_request_p95_s"], ""],
        ["  of which: run stored -> worker Job created", r["created_to_job_p50_s"],
         r["created_to_job_p95_s"], ""],
        ["apply -> first status decided (operator log)", r["apply_to_status_p50_s"],
         r["apply_to_status_p95_s"], ""],
        ["apply -> Job seen by a client (watch)", w["job_p50_s"], w["job_p95_s"], ""],
        ["apply -> status seen by a client (LIST every 0.5 s)", w["status_p50_s"], w["status_p95_s"], ""],
    ]
    print()
    print(f"{args.runs} TrainingRuns created in {r['apply_span_s']:.2f} s by {args.clients} clients; "
          f"{r['jobs_total']} Jobs ({r['duplicate_jobs']} duplicates), "
          f"{r['worker_pods_running']}/{r['worker_pods']} worker pods Running on {r['pod_nodes']}")
    print()
    print(table(["from apply to", "p50 (s)", "p95 (s)", "target"], rows))
    print()
    print(table(["operator memory", "MB"], [["idle (before the runs)", r["operator_idle_rss_mb"]],
                                            ["peak", r["operator_peak_rss_mb"]],
                                            ["at the end of the hold", r["operator_final_rss_mb"]],
                                            ["target (peak)", "< 250"]]))
    print()
    print(table(["API writes until every run is live", "requests"],
                [[k, v] for k, v in list(r["api_writes_until_all_live"].items())[:12]]))
    print()
    print(table(["CPU until every run is live (2 cores)", "s"], [[k, v] for k, v in r["cpu_s_until_all_live"].items()]))
    db = r["operator_db_connections"]
    print(f"\noperator's database connections: peak {db['peak']}, mean {db['mean']}; "
          f"storage problems logged: {r['operator_storage_problems_logged']}")


def measure(args: argparse.Namespace, controller: str) -> dict:
    """One control plane and PostgreSQL, one controller ("nova" or "floor"), args.runs new runs."""
    from kubernetes import client as k8s

    nova = controller == "nova"
    if args.apiserver_profile and nova:
        os.environ["NOVA_APISERVER_PROFILING"] = "1"
    if not controlplane.binaries_present():
        controlplane.ensure_built(log=print)
    cp = controlplane.start(log=lambda m: None)
    pg = start_postgres()
    op = None
    op_log = Path(tempfile.mkstemp(prefix="nova-operator-scale-", suffix=".log")[1])
    applied_wall: dict[str, float] = {}
    try:
        url = pg.create_database("operator_scale")
        apply_crd(cp)
        api = bench_namespace(cp, pool_size=args.clients + 8)
        core, batch, custom = k8s.CoreV1Api(api), k8s.BatchV1Api(api), k8s.CustomObjectsApi(api)
        core.create_namespaced_secret(NAMESPACE, {"metadata": {"name": "optuna"},
                                                  "data": {"url": base64.b64encode(url.encode()).decode()}})

        script = Path(sys.executable).parent / "nova-operator"
        cmd = [str(script)] if script.exists() else [sys.executable, "-m", "nova_operator.main"]
        cmd += ["--status-interval", str(args.status_interval)]
        if args.leader_elect:
            cmd += ["--leader-elect"]
        if not nova:
            cmd = [sys.executable, str(Path(__file__).resolve().parent / "_floor_controller.py")]
        print(f"{controller}: starting {'nova-operator' if nova else 'bench/_floor_controller.py'} ...", flush=True)
        with open(op_log, "w") as out:
            op = subprocess.Popen([*cmd, "-n", NAMESPACE],
                                  env={**os.environ, "KUBECONFIG": str(cp.kubeconfig),
                                       "NOVA_TRAINER_IMAGE": "nova-trainer:bench", "POD_NAMESPACE": NAMESPACE},
                                  stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        rss = RssSampler(op.pid)
        rss.start()
        connections = ConnectionSampler(pg, "operator_scale", every=0.2)
        connections.start()
        time.sleep(8)  # the operator's start-up: imports, kopf's first list of the (empty) namespace
        if op.poll() is not None:
            raise RuntimeError(f"the operator exited: {op_log.read_text()[-3000:]}")
        idle_rss = rss.rss()

        stop = threading.Event()
        jobs_seen: dict[str, float] = {}
        first_status: dict[str, float] = {}
        preparing: dict[str, float] = {}

        def on_run(name: str, obj: dict, t: float) -> None:
            phase = (obj.get("status") or {}).get("phase")
            if phase:
                first_status.setdefault(name, t)
            if phase in ("Preparing", "Running"):
                preparing.setdefault(name, t)

        def poll_runs() -> None:
            """The runs' status as the API server serves it (a LIST every 0.5 s, read from etcd): a
            watch on this loaded control plane delivered custom-resource events minutes late."""
            while not stop.is_set():
                try:
                    items = custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL,
                                                                 _request_timeout=30)["items"]
                    t = time.monotonic()
                    for obj in items:
                        on_run(obj["metadata"]["name"], obj, t)
                except Exception as exc:  # noqa: BLE001
                    print(f"poll: {exc}", file=sys.stderr)
                stop.wait(args.poll_interval)

        threads = [
            threading.Thread(target=watch, args=(batch.list_namespaced_job, jobs_seen, stop),
                             kwargs={"namespace": NAMESPACE}, daemon=True),
            threading.Thread(target=poll_runs, daemon=True),
        ]
        for t in threads:
            t.start()
        time.sleep(1.0)  # watches established
        # One run before the burst, as an operator that has been running has served: its storage's
        # connection pool is open (the first open costs ~0.5 s, once per process and storage URL)
        if not args.cold:
            warmup = run_manifest(0)
            warmup["metadata"]["name"] = "warmup"
            custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, warmup, _preload_content=False)
            deadline = time.monotonic() + 60
            while "warmup-workers" not in jobs_seen or (nova and "warmup" not in first_status):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the warm-up run got no Job: {op_log.read_text()[-3000:]}")
                time.sleep(0.2)
            time.sleep(2)

        spy = None
        if args.profile and nova:
            spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(op.pid), "-o",
                                    args.profile, "-f", "speedscope", "-r", "100", "--gil"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(2)
        applied: dict[str, float] = {}
        stored: dict[str, float] = {}  # when the API server answered the create: the run exists

        def create(i: int) -> None:
            body = run_manifest(i)
            applied[body["metadata"]["name"]] = time.monotonic()
            applied_wall[body["metadata"]["name"]] = time.time()
            custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, body, _preload_content=False)
            stored[body["metadata"]["name"]] = time.time()

        if args.apiserver_profile and nova:
            threading.Thread(target=lambda: Path(args.apiserver_profile).write_bytes(subprocess.run(
                [controlplane.find_kubectl(), f"--kubeconfig={cp.kubeconfig}", "get", "--raw",
                 "/debug/pprof/profile?seconds=10"], capture_output=True).stdout), daemon=True).start()
        writes_before = api_writes(cp)
        cpu_before = cpu_seconds(op.pid)
        print(f"creating {args.runs} TrainingRuns ...", flush=True)
        load_at_start = list(os.getloadavg())
        t0 = time.monotonic()
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(create, range(args.runs)))
        apply_span = time.monotonic() - t0
        workers_name = {f"r{i:03d}": f"r{i:03d}-workers" for i in range(args.runs)}
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if (all(j in jobs_seen for j in workers_name.values())
                    and (not nova or all(n in first_status and n in preparing for n in workers_name))):
                break
            if op.poll() is not None:
                raise RuntimeError(f"the operator exited: {op_log.read_text()[-3000:]}")
            time.sleep(0.2)
        all_live = time.monotonic() - t0
        cpu_after = cpu_seconds(op.pid)
        spent = {k: v - cpu_before.get(k, 0.0) for k, v in cpu_after.items()}
        cpu_burst = {k: round(v, 2) for k, v in sorted(spent.items(), key=lambda kv: kv[1], reverse=True)}
        writes = {k: v - writes_before.get(k, 0) for k, v in api_writes(cp).items() if v > writes_before.get(k, 0)}
        hold = args.hold if nova else 0
        print(f"all {args.runs} runs have a Job{' and a status' if nova else ''} after {all_live:.1f} s; "
              f"holding {hold:.0f} s", flush=True)
        time.sleep(hold)
        stop.set()
        rss.stop.set()
        rss.join()
        if spy is not None:
            spy.send_signal(2)
            spy.wait(timeout=60)

        seen_job = [jobs_seen[workers_name[n]] - t for n, t in applied.items() if workers_name[n] in jobs_seen]
        seen_status = [first_status[n] - t for n, t in applied.items() if n in first_status]
        seen_preparing = [preparing[n] - t for n, t in applied.items() if n in preparing]
        # the operator's own clock (same machine): when it created each Job and decided each first status
        made_job, decided = operator_times(op_log.read_text(errors="replace"))
        to_job = [made_job[n] - t for n, t in applied_wall.items() if n in made_job]
        to_status = [decided[n] - t for n, t in applied_wall.items() if n in decided]
        stored_to_job = [made_job[n] - t for n, t in stored.items() if n in made_job]
        create_latency = [stored[n] - t for n, t in applied_wall.items() if n in stored]
        pods = core.list_namespaced_pod(NAMESPACE).items
        nodes = sorted({p.spec.node_name for p in pods if p.spec.node_name})
        running = sum(1 for p in pods if p.status.phase == "Running")
        jobs = batch.list_namespaced_job(NAMESPACE).items
        duplicates = len(jobs) - len({j.metadata.name for j in jobs})
        errors = sum(1 for line in op_log.read_text(errors="replace").splitlines()
                     if " ERROR " in line or "Traceback" in line)
        storage_problems = sum(op_log.read_text(errors="replace").count(w)
                               for w in ("StorageUnavailable", "too many clients"))
        db = connections.finish()
        result = {
            "runs": args.runs,
            "status_interval_s": args.status_interval,
            "operator_workers": DEFAULT_HANDLER_THREADS,
            "apply_span_s": round(apply_span, 3),
            "apply_to_job_p50_s": round(pct(to_job, 0.5), 3),
            "apply_to_job_p95_s": round(pct(to_job, 0.95), 3),
            "apply_to_job_max_s": round(max(to_job), 3) if to_job else None,
            "apply_to_status_p50_s": round(pct(to_status, 0.5), 3),
            "apply_to_status_p95_s": round(pct(to_status, 0.95), 3),
            "create_request_p50_s": round(pct(create_latency, 0.5), 3),
            "create_request_p95_s": round(pct(create_latency, 0.95), 3),
            "created_to_job_p50_s": round(pct(stored_to_job, 0.5), 3),
            "created_to_job_p95_s": round(pct(stored_to_job, 0.95), 3),
            "measured_jobs": len(to_job),
            "measured_statuses": len(to_status),
            "watch_seen": {
                "note": "as a client sees them: Jobs through a watch, run status through a LIST every 0.5 s",
                "job_p50_s": round(pct(seen_job, 0.5), 3), "job_p95_s": round(pct(seen_job, 0.95), 3),
                "status_p50_s": round(pct(seen_status, 0.5), 3), "status_p95_s": round(pct(seen_status, 0.95), 3),
                "preparing_p50_s": round(pct(seen_preparing, 0.5), 3),
                "preparing_p95_s": round(pct(seen_preparing, 0.95), 3)},
            "all_runs_live_s": round(all_live, 3),
            "jobs_created": len(jobs_seen),
            "jobs_total": len(jobs),
            "duplicate_jobs": duplicates,
            "operator_db_connections": db,
            "operator_storage_problems_logged": storage_problems,
            "worker_pods": len(pods),
            "worker_pods_running": running,
            "pod_nodes": nodes,
            "operator_idle_rss_mb": round(idle_rss / 2**20, 1),
            "operator_peak_rss_mb": round(rss.peak / 2**20, 1),
            "operator_final_rss_mb": round(rss.samples[-1][1] / 2**20, 1) if rss.samples else None,
            "operator_log_errors": errors,
            "api_writes_until_all_live": dict(sorted(writes.items(), key=lambda kv: -kv[1])),
            "cpu_s_until_all_live": cpu_burst,
            "hold_s": args.hold,
            "targets": {"apply_to_job_p95_over_floor": RATIO_TARGET, "operator_peak_rss_mb": RSS_TARGET_MB},
            "leader_elect": bool(nova and args.leader_elect),
            "control_plane": {"kubernetes": controlplane.versions()["K8S_VERSION"], "nodes": "kwok (2 CPU, 2 GPU)"},
            "load_average_at_start": load_at_start,
            "load_average_at_end": list(os.getloadavg()),
        }
        result["meets_targets"] = result["operator_peak_rss_mb"] < RSS_TARGET_MB  # the ratio is judged in main()
        result["controller"] = controller
        return result
    finally:
        if op is not None and op.poll() is None:
            op.send_signal(2)
            try:
                op.wait(timeout=30)
            except subprocess.TimeoutExpired:
                op.kill()
        cp.stop()
        pg.destroy()
        if args.operator_log and nova:
            op_log.replace(args.operator_log)
            Path(args.operator_log + ".applied.json").write_text(json.dumps(applied_wall))
        op_log.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
