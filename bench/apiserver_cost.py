"""What each write of a new run costs the API server, and what the TrainingRun CRD adds to it.

Under 200 runs applied at once (bench/operator_scale.py) the API server is the busiest process on
the machine, so its CPU per request decides apply -> Job. Here, on a fresh test control plane per
CRD variant, N requests of each kind the operator makes for a new run are sent from 16 threads, and
the API server's CPU time (user + system, from /proc) is divided by N:

- POST trainingruns (what `kubectl apply` does), POST configmaps and POST jobs (Nova's builders),
- PATCH trainingruns/status (a merge patch with the first status Nova decides, then a second one),
- POST events, GET trainingruns; and the size of one run as stored.

The variants are the CRD as generated (crds/), the same CRD without its CEL rules, and without its
rules and its defaults (the rules read defaulted fields, so the defaults cannot go alone): not
proposals (the rules and defaults are the API), but the measure of what they cost each request.

    python bench/apiserver_cost.py [--requests 200] [--no-write]

Writes bench/results/apiserver_cost.json. Single measurements on a shared machine vary by ~25%.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "operator"))
from _common import table, write_result  # noqa: E402
from operator_scale import GROUP, NAMESPACE, PLURAL, VERSION, bench_namespace, run_manifest  # noqa: E402

from nova_operator import builders, studies  # noqa: E402
from nova_operator.decision import JobState, Observed, decide  # noqa: E402
from nova_operator.reconcile import resolve_run  # noqa: E402
from tests.cluster import controlplane  # noqa: E402
from tests.operator import conftest as operator_fixtures  # noqa: E402

# defaults alone cannot go: the cross-field rules read defaulted fields (the API server answers
# "no such key: target evaluating rule ..." to a run that omits them)
VARIANTS = {"as generated": (), "no CEL rules": ("x-kubernetes-validations",),
            "no CEL rules, no defaults": ("x-kubernetes-validations", "default")}


def without(node: object, keys: tuple[str, ...]) -> object:
    """The CRD with every `keys` entry removed at any depth."""
    if isinstance(node, dict):
        return {k: without(v, keys) for k, v in node.items() if k not in keys}
    if isinstance(node, list):
        return [without(v, keys) for v in node]
    return node


def first_status(run_body: dict) -> dict:
    """The status Nova writes on a new run's first pass (Preparing, its conditions and progress)."""
    run = resolve_run(run_body)
    observed = Observed(workers=JobState.from_job(None), refit=JobState.from_job(None),
                        studies=studies.empty_progress(run))
    return decide(run, observed, {}, builders.output_dir(run), builders.workers_job_name(run.name),
                  builders.refit_job_name(run.name), dt.datetime.now(dt.UTC)).status


def measure(crd: dict, requests: int) -> dict:
    import psutil
    from kubernetes import client as k8s

    if not controlplane.binaries_present():
        controlplane.ensure_built(log=print)
    cp = controlplane.start(log=lambda m: None)
    try:
        path = Path(tempfile.mkstemp(prefix="nova-crd-", suffix=".yaml")[1])
        path.write_text(yaml.safe_dump(crd))
        original, operator_fixtures.CRD_FILE = operator_fixtures.CRD_FILE, path
        try:
            operator_fixtures.apply_crd(cp)
        finally:
            operator_fixtures.CRD_FILE = original
        api = bench_namespace(cp, pool_size=24)
        core, batch, custom = k8s.CoreV1Api(api), k8s.BatchV1Api(api), k8s.CustomObjectsApi(api)
        apiserver = next(p for p in psutil.process_iter(["name"])
                         if (p.info["name"] or "").startswith("kube-apiserver"))

        def cpu() -> float:
            t = apiserver.cpu_times()
            return t.user + t.system

        operator_cfg = builders.OperatorConfig.from_env()
        runs: dict[int, dict] = {}
        costs: dict[str, float] = {}

        def each(kind: str, request: Callable[[int], object]) -> None:
            before = cpu()
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(request, range(requests)))
            costs[kind] = round(1000 * (cpu() - before) / requests, 2)

        def name(i: int) -> str:
            return f"r{i:03d}"

        def create_run(i: int) -> None:
            runs[i] = custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, run_manifest(i))

        def owner(i: int) -> dict:
            return builders.owner_reference(name(i), runs[i]["metadata"]["uid"])

        def status(i: int, phase: str | None = None) -> None:
            body = first_status(runs[i]) if phase is None else {**first_status(runs[i]), "phase": phase}
            custom.patch_namespaced_custom_object_status(GROUP, VERSION, NAMESPACE, PLURAL, name(i), {"status": body},
                                                         _preload_content=False)

        def event(i: int) -> None:
            md = runs[i]["metadata"]
            now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            core.create_namespaced_event(NAMESPACE, {
                "metadata": {"generateName": f"{md['name']}."},
                "involvedObject": {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainingRun", "name": md["name"],
                                   "namespace": NAMESPACE, "uid": md["uid"]},
                "type": "Normal", "reason": "Preparing", "message": "New -> Preparing",
                "source": {"component": "nova-operator"}, "firstTimestamp": now, "lastTimestamp": now, "count": 1},
                _preload_content=False)

        each("POST trainingruns", create_run)
        each("POST configmaps", lambda i: core.create_namespaced_config_map(
            NAMESPACE, builders.config_map(resolve_run(runs[i]), owner(i)), _preload_content=False))
        each("POST jobs", lambda i: batch.create_namespaced_job(
            NAMESPACE, builders.worker_job(resolve_run(runs[i]), owner(i), operator_cfg), _preload_content=False))
        time.sleep(5)  # the Job controller's and kwok's reactions to the Jobs, out of the next figures
        each("PATCH trainingruns/status (first)", status)
        each("POST events", event)
        each("PATCH trainingruns/status (next)", lambda i: status(i, "Running"))
        each("GET trainingruns", lambda i: custom.get_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL, name(i), _preload_content=False))
        stored = custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name(0),
                                                     _preload_content=False).data
        return {"api_server_cpu_ms_per_request": costs, "stored_run_bytes": len(stored)}
    finally:
        cp.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200, help="requests of each kind (default 200)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    crd = yaml.safe_load(operator_fixtures.CRD_FILE.read_text())
    results = {}
    for variant, keys in VARIANTS.items():
        print(f"{variant}: fresh control plane, {args.requests} requests of each kind ...", flush=True)
        results[variant] = measure(without(copy.deepcopy(crd), keys), args.requests)
    kinds = list(results["as generated"]["api_server_cpu_ms_per_request"])
    print()
    print(table(["API server CPU per request (ms)", *VARIANTS],
                [[k, *(results[v]["api_server_cpu_ms_per_request"][k] for v in VARIANTS)] for k in kinds]
                + [["one run as stored (bytes)", *(results[v]["stored_run_bytes"] for v in VARIANTS)]]))
    if not args.no_write:
        print(f"\nwrote {write_result('apiserver_cost', {'requests': args.requests, 'variants': results})}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
