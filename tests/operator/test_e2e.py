"""From `kubectl apply -f` to a tuned model, with every part real: the control plane of
tests/cluster, the operator as a subprocess (`nova-operator`), PostgreSQL holding the studies, and
pods that really run on the `nova-e2e-runner` node (a test stand-in for kubelet that runs the pods'
containers as local processes, see tests/cluster/local_runner.py): the `prep` native sidecar and the
`trainer` container of two worker pods (`nova-trainer prep` / `nova-trainer tune`), then the refit
Job (`nova-trainer refit`), whose model lands in the pod's output volume.

The run is examples/quickstart.yaml shrunk to seconds: synthetic bars, the minimal feature set,
a few trials, two workers, and scheduling onto the runner node."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from kubernetes import client as k8s
from optuna.trial import TrialState

from tests.operator.conftest import E2E_NODE, ON_E2E_NODE
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart.yaml"
GROUP, VERSION, PLURAL = "nova.dev", "v1alpha1", "trainingruns"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def tiny_quickstart(name: str, trials: int, workers: int, rounds: int = 40, bars: int = 900,
                    early_stopping: int | None = 10) -> dict:
    """examples/quickstart.yaml, shrunk: same sections, seconds instead of minutes."""
    run = yaml.safe_load(QUICKSTART.read_text())
    run["metadata"] = {"name": name}
    spec = run["spec"]
    spec["data"] = {"source": "synthetic", "symbols": ["AAA"], "bars": bars, "seed": 11}
    spec["features"] = {"set": "minimal"}
    spec["validation"] = {"walkForward": {"folds": 2, "testSize": 80, "gap": 1, "minTrainSize": 300}}
    spec["model"].update({"device": "cpu", "numBoostRound": rounds, "earlyStoppingRounds": early_stopping,
                          "nthread": 1})
    spec["tuning"].update({"trials": trials, "workers": workers, "heartbeatSeconds": 1, "graceSeconds": 8,
                           "pruner": {"type": "median", "warmupSteps": 5, "startupTrials": 2},
                           "storage": {"secretRef": {"name": "optuna", "key": "url"}}})
    spec["scheduling"] = ON_E2E_NODE
    small = {"requests": {"cpu": "100m", "memory": "128Mi"}}
    spec["resources"] = {"trainer": small, "prep": small}
    return run


class E2E:
    def __init__(self, control_plane, api: k8s.ApiClient, runner, ns: str, op=None) -> None:
        self.cp, self.runner, self.ns, self.op = control_plane, runner, ns, op
        self.core = k8s.CoreV1Api(api)
        self.batch = k8s.BatchV1Api(api)
        self.custom = k8s.CustomObjectsApi(api)

    def kubectl(self, *args: str, check: bool = True):
        return self.cp.kubectl("-n", self.ns, *args, check=check, timeout=120)

    def status(self, name: str) -> dict:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name).get("status") or {}

    def pods(self, job: str) -> list[k8s.V1Pod]:
        return self.core.list_namespaced_pod(self.ns, label_selector=f"job-name={job}").items

    def log(self, pod: str, container: str) -> str:
        path = self.runner.log_path(self.ns, pod, container)
        return path.read_text(errors="replace") if path.exists() else ""

    def pod_dirs(self, pod_prefix: str) -> list[Path]:
        return sorted((self.runner.root / "pods").glob(f"{self.ns}_{pod_prefix}*"))

    def diagnose(self, name: str) -> str:
        lines = [f"status: {json.dumps(self.status(name), indent=1)[:4000]}"]
        if self.op:
            lines += ["operator log:", self.op.output()[-4000:]]
        for p in self.core.list_namespaced_pod(self.ns).items:
            lines.append(f"pod {p.metadata.name}: {p.status.phase} on {p.spec.node_name}")
            for c in (p.spec.init_containers or []) + p.spec.containers:
                lines.append(f"--- {c.name}:\n{self.log(p.metadata.name, c.name)[-1500:]}")
        return "\n".join(lines)

    def wait_for(self, check: Callable[[], Any], what: str, name: str, timeout: float = 120) -> Any:
        return wait_for(check, what, timeout, diagnose=lambda: self.diagnose(name))

    def start(self, manifest: dict, pg_url: str, tmp_path: Path) -> str:
        """The Secret with the storage URL, then `kubectl apply -f run.yaml`, as a user does."""
        optuna.storages.RDBStorage(pg_url)  # Optuna's schema, so the test's reads never race its creation
        self.kubectl("create", "secret", "generic", "optuna", f"--from-literal=url={pg_url}")
        path = tmp_path / "run.yaml"
        path.write_text(yaml.safe_dump(manifest, sort_keys=False))
        out = self.kubectl("apply", "-f", str(path)).stdout
        name = manifest["metadata"]["name"]
        assert f"trainingrun.nova.dev/{name} created" in out
        return name


def study_trials(pg_url: str, study: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=study, storage=pg_url).get_trials(deepcopy=False)


def counted(trials: list[optuna.trial.FrozenTrial]) -> int:
    """What the budget counts (nova_trainer.tuning.budget): finished trials, a failed one only
    when no retry replaced it."""
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    return sum(1 for t in trials if t.state in FINISHED and not (t.state == TrialState.FAIL and t.number in retried))


@pytest.fixture
def e2e(control_plane, kube, e2e_runner, kube_namespace) -> E2E:
    return E2E(control_plane, kube, e2e_runner, kube_namespace)


def test_kubectl_apply_to_a_tuned_model(e2e, operator, pg_url, tmp_path):
    budget, workers = 4, 2
    e2e.op = operator()
    name = e2e.start(tiny_quickstart("quick", budget, workers), pg_url, tmp_path)
    e2e.wait_for(lambda: e2e.status(name).get("phase") in ("Succeeded", "Failed"), "the run to finish", name,
                 timeout=600)
    status = e2e.status(name)
    assert status["phase"] == "Succeeded", e2e.diagnose(name)
    assert next(c for c in status["conditions"] if c["type"] == "Ready")["status"] == "True"

    # the workers really ran on the runner node, both of them, and ended well
    pods = e2e.pods(f"{name}-workers")
    assert sorted(p.metadata.annotations["batch.kubernetes.io/job-completion-index"] for p in pods) == ["0", "1"]
    for pod in pods:
        assert pod.spec.node_name == E2E_NODE and pod.status.phase == "Succeeded"
        trainer = pod.status.container_statuses[0].state.terminated
        assert trainer.exit_code == 0
        index = pod.metadata.annotations["batch.kubernetes.io/job-completion-index"]
        assert f"AAA: worker {index} ran" in e2e.log(pod.metadata.name, "trainer")
        assert e2e.log(pod.metadata.name, "prep"), "the prep sidecar left no log"

    # the study holds exactly the budget (at most workers-1 over, when workers checked at once)
    trials = study_trials(pg_url, f"{e2e.ns}.{name}.AAA")
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    done = counted(trials)
    assert budget <= done <= budget + workers - 1, [(t.number, t.state) for t in trials]
    assert status["trials"] == f"{done}/{budget}"
    best = optuna.load_study(study_name=f"{e2e.ns}.{name}.AAA", storage=pg_url).best_value
    assert status["bestValue"] == pytest.approx(best) and status["bestSymbol"] == "AAA"

    # the refit wrote a real model where status.model says, and its summary reached the status
    model = status["model"]
    assert model["uri"] == f"/output/{e2e.ns}/{name}"
    aaa = model["symbols"][0]
    assert aaa["symbol"] == "AAA" and aaa["file"].endswith(".ubj") and aaa["metrics"], model
    assert aaa["bestValue"] == pytest.approx(best)
    refit_dirs = e2e.pod_dirs(f"{name}-refit-")
    assert refit_dirs, "no refit pod ran on the runner"
    files = [d / "volumes" / "output" / aaa["file"] for d in refit_dirs]
    written = [f for f in files if f.exists() and f.stat().st_size > 0]
    assert written, f"no model file among {files}"
    import xgboost

    booster = xgboost.Booster(model_file=str(written[0]))
    assert booster.num_boosted_rounds() > 0

    # what a user sees
    table = e2e.kubectl("get", "trainingruns").stdout.splitlines()
    assert table[0].split() == ["NAME", "PHASE", "SYMBOLS", "TRIALS", "BEST", "AGE"], table
    row = table[1].split()
    assert row[:4] == [name, "Succeeded", "1", f"{done}/{budget}"], table
    assert float(row[4]) == pytest.approx(best, abs=1e-6), table
    reasons = {e.reason for e in e2e.core.list_namespaced_event(
        e2e.ns, field_selector=f"involvedObject.name={name}").items}
    assert {"TuningComplete", "Succeeded"} <= reasons, reasons


def test_deleted_worker_pod_is_recreated_and_its_trial_retried(e2e, operator, pg_url, tmp_path):
    """A worker pod deleted while it runs a trial (frozen first, so it cannot hand its trial back on
    SIGTERM: the trial is left RUNNING, as when a node disappears): the Job recreates the pod for
    that index, the trial's heartbeat goes stale, another worker fails it and runs its retry, and the
    study still ends with exactly its budget and no trial lost."""
    budget, workers = 8, 2
    e2e.op = operator()
    name = e2e.start(tiny_quickstart("del", budget, workers, rounds=400, bars=3000,
                                                                  early_stopping=None), pg_url, tmp_path)
    study = f"{e2e.ns}.{name}.AAA"

    def both_running():
        try:
            trials = study_trials(pg_url, study)
        except KeyError:  # the study is created by the operator first
            return None
        running = [t.number for t in trials if t.state == TrialState.RUNNING]
        return running if len(running) == workers and counted(trials) < budget - 2 else None

    running = e2e.wait_for(both_running, "both workers in a trial", name, timeout=420)
    victim = next(p for p in e2e.pods(f"{name}-workers") if p.status.phase == "Running")
    index = victim.metadata.annotations["batch.kubernetes.io/job-completion-index"]
    worker = e2e.runner.workers[victim.metadata.uid]
    trainer_pid = worker.main["trainer"].popen.pid
    os.killpg(trainer_pid, signal.SIGSTOP)  # frozen: no heartbeat, no SIGTERM handling
    e2e.kubectl("delete", "pod", victim.metadata.name, "--grace-period=0", "--force")

    def replacement():
        for p in e2e.pods(f"{name}-workers"):
            if (p.metadata.annotations["batch.kubernetes.io/job-completion-index"] == index
                    and p.metadata.uid != victim.metadata.uid and p.status.phase in ("Running", "Succeeded")):
                return p
        return None

    e2e.wait_for(replacement, f"the Job to recreate worker {index}", name, timeout=180)
    e2e.wait_for(lambda: e2e.status(name).get("phase") in ("Succeeded", "Failed"), "the run to finish", name,
                 timeout=600)
    status = e2e.status(name)
    assert status["phase"] == "Succeeded", e2e.diagnose(name)

    trials = study_trials(pg_url, study)
    by_number = {t.number: t for t in trials}
    lost = [n for n in running if by_number[n].state == TrialState.FAIL]
    assert len(lost) == 1, [(n, by_number[n].state) for n in running]
    assert not by_number[lost[0]].user_attrs.get("interrupted"), "the frozen trial was handed back, not failed stale"
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == lost[0]]
    assert len(retries) == 1 and retries[0].state in (TrialState.COMPLETE, TrialState.PRUNED), retries
    # The same trial, run again: every parameter the lost trial had drawn is reused (a trial frozen
    # mid-suggestion had not drawn them all yet; the retry draws the rest).
    lost_params = by_number[lost[0]].params
    assert {k: retries[0].params.get(k) for k in lost_params} == lost_params
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    done = counted(trials)
    assert budget <= done <= budget + workers - 1, [(t.number, t.state) for t in trials]
    assert sum(1 for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)) == done  # none lost
    assert status["trials"] == f"{done}/{budget}"

    # The refit starts once every study holds its budget, so the run can be Succeeded while the
    # replacement pod still finds the budget spent and exits; the Job then counts it. (Once, in a
    # full suite, a second pod of the frozen index failed before a third succeeded: hence >= 1.)
    def job_complete():
        job = e2e.batch.read_namespaced_job(f"{name}-workers", e2e.ns)
        return job if (job.status.succeeded or 0) >= workers else None

    job = e2e.wait_for(job_complete, "every index of the workers Job to succeed", name, timeout=180)
    assert job.status.failed >= 1 and job.status.succeeded == workers, e2e.diagnose(name)
    assert any(p.status.phase == "Succeeded" for p in e2e.pods(f"{name}-workers")
               if p.metadata.annotations["batch.kubernetes.io/job-completion-index"] == index), e2e.diagnose(name)


@pytest.mark.reliability
def test_operator_killed_at_six_points_of_one_run(e2e, operator, pg_url, tmp_path):
    """One run, the operator killed (os._exit, as SIGKILL) at each point between two of its writes
    (nova_operator/failpoints.py), restarted each time with the next point armed, then left alone:
    the run still ends Succeeded with one of each child, the budget met within its bound, no trial
    RUNNING and none lost."""
    from nova_operator.failpoints import POINTS

    # long enough that a status pass still sees trials running at the fourth start (the workers
    # run from the second, after-job, on; 10 trials were all done by then)
    budget, workers = 24, 2
    name = None
    for point in POINTS:
        e2e.op = operator(NOVA_FAILPOINT=point)
        if name is None:
            name = e2e.start(tiny_quickstart("kills", budget, workers, rounds=300, bars=3000,
                                                      early_stopping=None), pg_url, tmp_path)
        try:
            e2e.op.proc.wait(timeout=600)
        except Exception:  # noqa: BLE001 - report where it stood
            raise AssertionError(f"the operator never reached failpoint {point}\n{e2e.diagnose(name)}") from None
        assert e2e.op.proc.returncode == 137 and f"[nova failpoint] {point}" in e2e.op.output(), e2e.op.output()
        status = e2e.status(name)
        if point == "after-configmap":  # died between its first two writes
            e2e.core.read_namespaced_config_map(f"{name}-config", e2e.ns)
            assert not e2e.batch.list_namespaced_job(e2e.ns).items and not status
        if point == "after-job":  # the Job exists, no status says so yet
            assert len(e2e.batch.list_namespaced_job(e2e.ns).items) == 1 and not status.get("phase"), status
        if point == "before-status-Refitting":
            assert e2e.batch.read_namespaced_job(f"{name}-refit", e2e.ns) and status.get("phase") != "Refitting"
    e2e.op = operator()
    e2e.wait_for(lambda: e2e.status(name).get("phase") in ("Succeeded", "Failed"), "the run to finish", name,
                 timeout=600)
    status = e2e.status(name)
    assert status["phase"] == "Succeeded", e2e.diagnose(name)
    jobs = sorted(j.metadata.name for j in e2e.batch.list_namespaced_job(e2e.ns).items)
    assert jobs == [f"{name}-refit", f"{name}-workers"], jobs
    maps = [c.metadata.name for c in e2e.core.list_namespaced_config_map(e2e.ns).items
            if c.metadata.name.startswith(name)]
    assert maps == [f"{name}-config"], maps
    trials = study_trials(pg_url, f"{e2e.ns}.{name}.AAA")
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    done = counted(trials)
    assert budget <= done <= budget + workers - 1, [(t.number, t.state) for t in trials]
    assert sum(1 for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)) == done  # none lost
    assert status["trials"] == f"{done}/{budget}" and status["model"]["symbols"][0]["file"].endswith(".ubj")
