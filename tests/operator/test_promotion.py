"""Promotion on the real control plane, with pods that really run (the real node): a
TrainingSchedule's first run is tuned, refitted and promoted (nothing was promoted before); its
second run, made deliberately worse (one boosting round of one split), is warm-started from the
first (the first's best trials are the first in its study), judged on the same newest bars as the
promoted model, and not promoted: the status keeps the first with both scores and the reason, an
Event says so, and `<output>/<schedule>/current/AAA/` still holds the first run's model.

Runs are started with the run-now annotation rather than by waiting for cron ticks, so the test
can make the template worse between the two; the one-minute cron itself, and an operator killed
right after creating a tick's run (no duplicate), are tested in test_schedule.py.

The models live on a PersistentVolumeClaim (the operator's NOVA_OUTPUT_CLAIM, as the chart's
models PVC): bound to a static PersistentVolume by the real controller-manager, shared by the
node's pods (tests/operator/e2e.py). The bars are on the same claim, read-only (data.claimName)."""

from __future__ import annotations

import json

import optuna
import pytest
from optuna.trial import TrialState

from nova.spec import ParamSpace
from nova.warm_start import WARM_START_ATTR, fit
from nova_operator.schedule_decision import run_now_name
from tests.operator.e2e import CLAIM, E2E, GROUP, VERSION, tiny_quickstart
from tests.support.learnable import write_learnable

pytestmark = [pytest.mark.cluster, pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1500)]
SCHEDULES = "trainingschedules"


def schedule_body(data: str) -> dict:
    template = tiny_quickstart("x", trials=4, workers=1)["spec"]
    template["data"] = {"source": "file", "claimName": CLAIM, "uri": data, "symbols": ["AAA"], "lookback": "20y",
                        "end": "latest"}
    template["tuning"]["searchSpace"] = {"eta": {"type": "float", "low": 0.1, "high": 0.3},
                                         "max_depth": {"type": "int", "low": 3, "high": 6}}
    template["model"].update({"numBoostRound": 40, "earlyStoppingRounds": None})
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainingSchedule", "metadata": {"name": "sched"},
            "spec": {"schedule": "0 0 1 1 *", "warmStart": {"topK": 2}, "successfulRunsHistoryLimit": 5,
                     "promotion": {"window": 60, "gap": 5}, "runTemplate": template}}


def test_a_worse_second_run_is_warm_started_judged_and_not_promoted(e2e, pg_url):
    claim = e2e.models
    write_learnable(claim / "bars")
    for path in (claim / "bars", *(claim / "bars").rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)  # readable by the pods' uid 1000
    e2e.storage_secret()
    e2e.operator()
    e2e.custom.create_namespaced_custom_object(GROUP, VERSION, e2e.ns, SCHEDULES, schedule_body("bars"))

    first = run_now(e2e, "first")
    status = wait_judged(e2e, first)
    decision = status["lastPromotion"]["symbols"]["AAA"]
    assert decision["promoted"] and decision["reason"].startswith("no model promoted yet"), status
    promoted = status["promoted"]["AAA"]
    assert promoted["run"] == first and promoted["metric"] == "auc" and promoted["scores"]["metric"] > 0.8
    assert promoted["currentUri"] == f"/output/{e2e.ns}/sched/current/AAA/"
    assert promoted["modelUri"] == f"/output/{e2e.ns}/{first}/AAA/model.ubj"  # as the run's status.model says
    current = claim / e2e.ns / "sched" / "current" / "AAA"
    assert json.loads((current / "promoted.json").read_text())["run"] == first
    assert (current / "model.ubj").read_bytes() == (claim / e2e.ns / first / "AAA" / "model.ubj").read_bytes()
    # the run learned without the newest 65 bars (promotion gap + window), the judgement used them
    card = json.loads((claim / e2e.ns / first / "AAA" / "card.json").read_text())
    assert decision["window"].split("..")[0] > card["data"]["end"]

    # deliberately worse: one boosting round of one split
    worse = {"eta": {"type": "float", "low": 0.1, "high": 0.3}, "max_depth": {"type": "categorical", "choices": [1]}}
    patch = {"eta": worse["eta"], "max_depth": {**worse["max_depth"], "low": None, "high": None}}  # a merge patch
    e2e.custom.patch_namespaced_custom_object(GROUP, VERSION, e2e.ns, SCHEDULES, "sched", {"spec": {"runTemplate": {
        "model": {"numBoostRound": 1}, "tuning": {"searchSpace": patch}}}})
    second = run_now(e2e, "second")
    run = e2e.custom.get_namespaced_custom_object(GROUP, VERSION, e2e.ns, "trainingruns", second)
    assert run["spec"]["tuning"]["warmStartFrom"] == first and run["spec"]["model"]["numBoostRound"] == 1

    # the first run's two best trials, fitted to the new space, were the first the second tried
    old = optuna.load_study(study_name=f"{e2e.ns}.{first}.AAA", storage=pg_url)
    best = sorted((t for t in old.trials if t.state == TrialState.COMPLETE), key=lambda t: -t.value)[:2]
    new = optuna.load_study(study_name=f"{e2e.ns}.{second}.AAA", storage=pg_url)
    space = {k: ParamSpace.model_validate(v) for k, v in worse.items()}
    assert [t.system_attrs.get("fixed_params") for t in new.trials[:2]] == [fit(t.params, space)[0] for t in best]
    assert new.user_attrs[WARM_START_ATTR]["from"] == f"{e2e.ns}.{first}.AAA"

    status = wait_judged(e2e, second)
    decision = status["lastPromotion"]["symbols"]["AAA"]
    assert not decision["promoted"], status
    assert decision["incumbentRun"] == first
    assert decision["candidate"]["metric"] < decision["incumbent"]["metric"], decision  # both on one window
    assert "kept the promoted model" in decision["reason"]
    assert status["promoted"]["AAA"]["run"] == first  # the incumbent stays
    assert json.loads((current / "promoted.json").read_text())["run"] == first
    events = {(e.reason, e.message.split(":")[0]) for e in e2e.core.list_namespaced_event(
        e2e.ns, field_selector="involvedObject.name=sched").items}
    assert {("Promoted", "AAA"), ("NotPromoted", "AAA")} <= events, events
    pods = e2e.pods(f"{second}-promote")
    assert pods and all(p.spec.node_name == e2e.node.name for p in pods)


def run_now(e2e: E2E, value: str) -> str:
    """`kubectl annotate ts sched nova.dev/run-now=<value>`; the run it makes, once Succeeded."""
    e2e.kubectl("annotate", "--overwrite", "trainingschedule", "sched", f"nova.dev/run-now={value}")
    name = run_now_name("sched", value)
    e2e.wait_for(lambda: e2e.status(name).get("phase") in ("Succeeded", "Failed") if _exists(e2e, name) else None,
                 f"{name} to finish", name, timeout=600)
    assert e2e.status(name)["phase"] == "Succeeded", e2e.diagnose(name)
    return name


def wait_judged(e2e: E2E, run: str) -> dict:
    def judged():
        status = e2e.custom.get_namespaced_custom_object(GROUP, VERSION, e2e.ns, SCHEDULES, "sched").get("status")
        last = (status or {}).get("lastPromotion") or {}
        return status if last.get("run") == run and last.get("phase") in ("Done", "Failed") else None

    status = e2e.wait_for(judged, f"the promotion of {run}", run, timeout=300)
    assert status["lastPromotion"]["phase"] == "Done", status["lastPromotion"]
    return status


def _exists(e2e: E2E, name: str) -> bool:
    from kubernetes.client.exceptions import ApiException

    try:
        e2e.custom.get_namespaced_custom_object(GROUP, VERSION, e2e.ns, "trainingruns", name)
        return True
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
