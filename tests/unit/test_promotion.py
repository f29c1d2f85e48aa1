"""Promotion: the rule (nova.promotion.judge) alone, the bars each scheduled run keeps apart, the
trainer's `promote` on real XGBoost models (a tuned-like model against a one-split one, on bars
neither trained on), and what the operator's pass makes of it (the promote Job, the status)."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import pytest
from pydantic import ValidationError

from nova.promotion import POINTER_FILE, PromotionSpec, Scores, current_dir, judge
from nova.schedule import TrainingScheduleSpec
from nova.spec import ResolvedRun, TrainingRunSpec
from nova_operator import builders
from nova_operator.promotion_decision import PromoteJob, decide, pending
from nova_operator.schedule_decision import run_manifest
from tests.support.learnable import write_learnable
from tests.unit.test_builders import restricted_violations

SPEC = PromotionSpec()


# ------------------------------------------------------------------------------------ the rule
def test_no_incumbent_promotes():
    v = judge(Scores(0.6, 1.2), None, "auc", True, SPEC)
    assert v.promote and v.reason.startswith("no model promoted yet")


def test_better_promotes_and_says_by_how_much_with_both_scores():
    v = judge(Scores(0.62, 1.3), Scores(0.60, 1.1), "auc", True, SPEC)
    assert v.promote and "better by 0.0200" in v.reason and "0.6200 vs 0.6000" in v.reason


def test_a_tie_keeps_the_incumbent():
    v = judge(Scores(0.6, 1.0), Scores(0.6, 1.0), "auc", True, SPEC)
    assert not v.promote and "not better" in v.reason


def test_worse_keeps_the_incumbent():
    v = judge(Scores(0.55, 2.0), Scores(0.6, 1.0), "auc", True, SPEC)
    assert not v.promote and "kept the promoted model" in v.reason


def test_better_by_less_than_min_improvement_keeps_the_incumbent():
    spec = PromotionSpec(min_improvement=0.01)
    assert not judge(Scores(0.605, 1.2), Scores(0.6, 1.0), "auc", True, spec).promote
    assert judge(Scores(0.611, 1.2), Scores(0.6, 1.0), "auc", True, spec).promote
    assert "less than minImprovement 0.01" in judge(Scores(0.605, 1.2), Scores(0.6, 1.0), "auc", True, spec).reason


def test_a_lower_net_sharpe_keeps_the_incumbent_unless_not_required():
    assert not judge(Scores(0.62, 0.9), Scores(0.6, 1.0), "auc", True, SPEC).promote
    assert judge(Scores(0.62, 0.9), Scores(0.6, 1.0), "auc", True, PromotionSpec(require_sharpe=False)).promote


def test_a_metric_to_minimize_is_better_when_lower():
    assert judge(Scores(0.65, 1.0), Scores(0.69, 1.0), "logloss", False, SPEC).promote
    assert not judge(Scores(0.70, 1.0), Scores(0.69, 1.0), "logloss", False, SPEC).promote


def test_a_candidate_that_cannot_be_scored_is_never_promoted():
    assert not judge(Scores(math.nan, 1.0), None, "auc", True, SPEC).promote


def test_an_incumbent_that_cannot_be_scored_gives_way_and_the_reason_says_why():
    v = judge(Scores(0.55, 1.0), None, "auc", True, SPEC, incumbent_problem="/m/AAA.ubj not found")
    assert v.promote and "could not be scored (/m/AAA.ubj not found)" in v.reason


def test_the_pointer_path():
    assert current_dir("/output/ns/", "nightly", "AAPL") == "/output/ns/nightly/current/AAPL"


def test_the_gap_must_cover_the_horizon():
    template = {"data": {"symbols": ["AAA"], "lookback": "2y", "end": "latest"}, "target": {"horizon": 5},
                "validation": {"walkForward": {"gap": 5}}}
    with pytest.raises(ValidationError, match="promotion.gap must be >= runTemplate.target.horizon"):
        TrainingScheduleSpec.model_validate({"schedule": "@daily", "runTemplate": template,
                                             "promotion": {"gap": 2}})
    ok = TrainingScheduleSpec.model_validate({"schedule": "@daily", "runTemplate": template,
                                              "promotion": {"gap": 2, "enabled": False}})
    assert not ok.promotion.enabled


def test_each_scheduled_run_keeps_gap_plus_window_bars_apart():
    spec = TrainingScheduleSpec.model_validate({"schedule": "@daily", "promotion": {"window": 40, "gap": 3},
                                                "runTemplate": {"data": {"symbols": ["AAA"]}}})
    body = {"metadata": {"name": "s", "namespace": "ns", "uid": "u"}}
    made = run_manifest(body, spec, "s-1", dt.datetime(2026, 5, 4, tzinfo=dt.UTC), None)
    assert made["spec"]["data"]["reserveLastBars"] == 43
    off = spec.model_copy(update={"promotion": PromotionSpec(enabled=False)})
    assert run_manifest(body, off, "s-1", dt.datetime(2026, 5, 4, tzinfo=dt.UTC), None)["spec"]["data"].get(
        "reserveLastBars", 0) == 0


# ------------------------------------------------------------------- the trainer, real models
def _run(tmp_path: Path, name: str, reserve: int = 65, **model) -> ResolvedRun:
    spec = TrainingRunSpec.model_validate({
        "data": {"source": "file", "uri": str(tmp_path / "bars"), "symbols": ["AAA"], "reserveLastBars": reserve},
        "features": {"set": "minimal"},
        "validation": {"walkForward": {"folds": 2, "testSize": 80, "gap": 1, "minTrainSize": 300}},
        "model": {"device": "cpu", "numBoostRound": 40, "earlyStoppingRounds": None, "nthread": 1, **model},
        "tuning": {"trials": 1}, "gpu": {"count": 0}})
    return ResolvedRun(name=name, namespace="ns", spec=spec)


@pytest.fixture(name="models")
def _models(tmp_path):
    """Two runs' models on the same bars: one that can learn the pattern, one split of one tree."""
    from nova_trainer.api import train_symbol

    write_learnable(tmp_path / "bars")
    good, stump = _run(tmp_path, "good"), _run(tmp_path, "stump", numBoostRound=1)
    train_symbol(good.spec, "AAA", tmp_path / "out" / "good", tuned={"max_depth": 4, "eta": 0.3})
    train_symbol(stump.spec, "AAA", tmp_path / "out" / "stump", tuned={"max_depth": 1, "eta": 0.3})
    return good, stump


def _request(tmp_path, candidate: str, incumbent: str | None) -> dict:
    root = tmp_path / "out"
    return {"schedule": "nightly", "outputRoot": str(root), "candidateDir": str(root / candidate),
            "incumbents": {"AAA": {"run": incumbent, "dir": str(root / incumbent)}} if incumbent else {},
            "promotion": PromotionSpec(window=60, gap=5).model_dump(by_alias=True)}


def test_reserved_bars_are_kept_from_the_run_and_given_to_the_judgement(tmp_path):
    from nova_trainer.dataset import load_symbol_data

    write_learnable(tmp_path / "bars")
    run = _run(tmp_path, "r")
    assert len(load_symbol_data(run.spec, "AAA", reserve=False).y) - len(load_symbol_data(run.spec, "AAA").y) == 65


def test_all_bars_reserved_is_a_clear_error(tmp_path):
    from nova.errors import DataError
    from nova_trainer.dataset import load_symbol_data

    write_learnable(tmp_path / "bars", n=400)
    with pytest.raises(DataError, match="reserveLastBars 5000 keeps apart every one"):
        load_symbol_data(_run(tmp_path, "r", reserve=5000).spec, "AAA")


def test_promote_first_model_then_refuse_a_worse_one_and_keep_the_pointer(tmp_path, models):
    from nova_trainer.promotion import promote

    good, stump = models
    first = promote(good, _request(tmp_path, "good", None))["symbols"]["AAA"]
    assert first["promoted"] and first["reason"].startswith("no model promoted yet")
    current = Path(current_dir(str(tmp_path / "out"), "nightly", "AAA"))
    pointer = json.loads((current / POINTER_FILE).read_text())
    assert pointer["run"] == "good" and (current / pointer["model"]).read_bytes() == \
        (tmp_path / "out" / "good" / "AAA" / "model.ubj").read_bytes()
    card = json.loads((tmp_path / "out" / "good" / "AAA" / "card.json").read_text())
    window_start = first["window"].split("..")[0]
    assert window_start > card["data"]["end"]  # bars the model never trained on

    second = promote(stump, _request(tmp_path, "stump", "good"))["symbols"]["AAA"]
    assert not second["promoted"], second
    assert second["candidate"]["metric"] < second["incumbent"]["metric"]  # both scored, on the same window
    assert second["window"] == first["window"] and second["incumbentRun"] == "good"
    assert "kept the promoted model" in second["reason"]
    assert json.loads((current / POINTER_FILE).read_text())["run"] == "good"  # untouched


def test_a_missing_incumbent_model_gives_way_with_the_path_in_the_reason(tmp_path, models):
    from nova_trainer.promotion import promote

    _, stump = models
    decision = promote(stump, _request(tmp_path, "stump", "gone"))["symbols"]["AAA"]
    assert decision["promoted"] and "gone/AAA/model.ubj not found (run gone)" in decision["reason"]


def test_a_candidate_without_its_model_is_not_judged(tmp_path, models):
    from nova_trainer.promotion import promote

    good, _ = models
    decision = promote(good.model_copy(update={"name": "never"}), _request(tmp_path, "never", "good"))
    assert decision["symbols"]["AAA"] == {"promoted": False, "reason": decision["symbols"]["AAA"]["reason"]}
    assert "never/AAA/model.ubj not found" in decision["symbols"]["AAA"]["reason"]


# ---------------------------------------------------------------------- the operator's pass
CLAIM = builders.OperatorConfig(trainer_image="t:1", output_claim="models")
NOW = dt.datetime(2026, 5, 4, 9, 0, tzinfo=dt.UTC)


def schedule(status=None, **promotion):
    return {"metadata": {"name": "nightly", "namespace": "ns", "uid": "s-uid"},
            "spec": {"schedule": "@daily", "promotion": promotion,
                     "runTemplate": {"data": {"symbols": ["AAA", "BBB"]}}},
            "status": status or {}}


def succeeded(name):
    return {"metadata": {"name": name, "namespace": "ns", "uid": f"{name}-uid"},
            "spec": {"data": {"symbols": ["AAA", "BBB"], "reserveLastBars": 65}},
            "status": {"phase": "Succeeded", "model": {"uri": f"/output/ns/{name}", "symbols": [
                {"symbol": "AAA", "file": "AAA.ubj"}, {"symbol": "BBB", "file": "BBB.ubj"}]}}}


def _decide(body, runs, job=None, cfg=CLAIM):
    return decide(body, TrainingScheduleSpec.model_validate(body["spec"]), runs, job, cfg, NOW)


def test_a_succeeded_run_gets_a_promote_job_naming_both_models():
    promoted = {"AAA": {"run": "nightly-1", "modelUri": "/output/ns/nightly-1/AAA.ubj"}}
    body = schedule({"promoted": promoted, "lastPromotion": {"run": "nightly-1", "phase": "Done"}})
    p = _decide(body, [succeeded("nightly-2"), succeeded("nightly-1")])
    (job,) = p.create
    assert job["metadata"]["name"] == "nightly-2-promote"
    assert job["metadata"]["ownerReferences"][0]["uid"] == "nightly-2-uid"  # goes with its run
    pod = job["spec"]["template"]["spec"]
    assert restricted_violations(pod) == []
    (c,) = pod["containers"]
    assert c["args"][:3] == ["promote", "--config", builders.RUN_JSON]
    request = json.loads(c["args"][c["args"].index("--request") + 1])
    assert request["candidateDir"] == "/output/ns/nightly-2"
    assert request["incumbents"] == {"AAA": {"run": "nightly-1", "dir": "/output/ns/nightly-1"}}
    assert {"name": "output", "mountPath": "/output/ns", "subPath": "ns"} in c["volumeMounts"]
    assert {"name": "output", "persistentVolumeClaim": {"claimName": "models"}} in pod["volumes"]
    assert {"name": "config", "configMap": {"name": "nightly-2-config"}} in pod["volumes"]
    assert "resources" not in c or "nvidia.com/gpu" not in (c["resources"].get("limits") or {})
    assert p.status["lastPromotion"] == {"run": "nightly-2", "phase": "Evaluating", "symbols": {}, "time": None,
                                         "message": None}
    assert p.status["promoted"] == promoted and p.evaluating == "nightly-2"


def test_the_decision_goes_into_the_status_with_both_scores_and_events():
    body = schedule({"promoted": {"AAA": {"run": "nightly-1", "modelUri": "/output/ns/nightly-1/AAA.ubj"}}})
    result = {"version": 1, "symbols": {
        "AAA": {"promoted": False, "reason": "auc not better", "candidate": {"metric": 0.55, "sharpeNet": 0.4},
                "incumbent": {"metric": 0.7, "sharpeNet": 2.1}, "incumbentRun": "nightly-1", "window": "w"},
        "BBB": {"promoted": True, "reason": "no model promoted yet: promoted", "model": "/pod/sees/it/here.ubj",
                "current": "/pod/current/BBB", "candidate": {"metric": 0.6, "sharpeNet": 1.0}}}}
    p = _decide(body, [succeeded("nightly-2")], PromoteJob("Succeeded", json.dumps(result)))
    assert p.create == []
    last = p.status["lastPromotion"]
    assert last["phase"] == "Done" and last["time"] == "2026-05-04T09:00:00Z"
    assert last["symbols"]["AAA"]["candidate"] == {"metric": 0.55, "sharpeNet": 0.4}
    assert last["symbols"]["AAA"]["incumbent"] == {"metric": 0.7, "sharpeNet": 2.1}
    assert p.status["promoted"]["AAA"]["run"] == "nightly-1"  # kept
    bbb = p.status["promoted"]["BBB"]
    assert bbb["run"] == "nightly-2" and bbb["currentUri"] == "/output/ns/nightly/current/BBB/"
    assert bbb["modelUri"] == "/output/ns/nightly-2/BBB.ubj" and bbb["metric"] == "auc"
    assert {(kind, reason) for kind, reason, _ in p.events} == {("Normal", "NotPromoted"), ("Normal", "Promoted")}
    again = schedule(p.status)  # the next pass: judged already, nothing more
    assert pending(again, TrainingScheduleSpec.model_validate(again["spec"]), [succeeded("nightly-2")]) is None
    assert _decide(again, [succeeded("nightly-2")]).status == p.status


def test_a_running_job_is_waited_for_and_a_failed_one_keeps_the_models_with_the_reason():
    body = schedule()
    assert _decide(body, [succeeded("n-2")], PromoteJob("Active")).status["lastPromotion"]["phase"] == "Evaluating"
    failed = _decide(body, [succeeded("n-2")], PromoteJob("Failed", message="MemoryError"))
    assert failed.status["lastPromotion"]["phase"] == "Failed" and "MemoryError" in failed.status[
        "lastPromotion"]["message"]
    assert failed.events[0][:2] == ("Warning", "PromotionFailed")
    unreadable = _decide(body, [succeeded("n-2")], PromoteJob("Succeeded", "not json"))
    assert "no readable decision" in unreadable.status["lastPromotion"]["message"]


def test_what_an_earlier_record_said_is_cleared_in_the_merge_patch():
    """The status is merge-patched: a key left out would keep the older record's value."""
    old = {"run": "n-1", "phase": "Failed", "message": "the promote Job failed", "symbols": {"OLD": {"promoted": True}}}
    result = {"symbols": {"AAA": {"promoted": True, "reason": "r", "candidate": {"metric": 0.6, "sharpeNet": 1.0}}}}
    p = _decide(schedule({"lastPromotion": old}), [succeeded("n-2")], PromoteJob("Succeeded", json.dumps(result)))
    last = p.status["lastPromotion"]
    assert last["message"] is None and last["symbols"]["OLD"] is None and last["symbols"]["AAA"]["promoted"]
    assert p.status["promoted"]["AAA"]["incumbentScores"] is None


def test_without_an_output_claim_promotion_says_what_is_missing():
    p = _decide(schedule(), [succeeded("n-2")], cfg=builders.OperatorConfig(trainer_image="t:1"))
    assert p.create == [] and p.status["lastPromotion"]["phase"] == "Failed"
    assert "NOVA_OUTPUT_CLAIM" in p.status["lastPromotion"]["message"]


def test_promotion_off_or_nothing_succeeded_changes_nothing():
    assert _decide(schedule(enabled=False), [succeeded("n-2")]).create == []
    assert _decide(schedule(), []).status == {"promoted": {}, "lastPromotion": None}


def test_the_decision_of_many_symbols_fits_a_termination_message():
    from nova_trainer.promotion import compact

    one = {"promoted": True, "reason": "x" * 300, "candidate": {"metric": 0.612345, "sharpeNet": 1.2345},
           "incumbent": {"metric": 0.6, "sharpeNet": 1.0}, "incumbentRun": "nightly-202605040905",
           "window": "2026-01-02..2026-03-30 (60 bars)", "model": "/output/ns/nightly-202605050905/SYMBOL.ubj",
           "current": "/output/ns/nightly/current/SYMBOL"}
    for n, fields in ((3, {"window", "model", "current"}), (20, set())):
        text = compact({"version": 1, "symbols": {f"S{i}": dict(one) for i in range(n)}})
        assert len(text) <= 4000
        back = json.loads(text)["symbols"]
        assert all(d["promoted"] and d["candidate"]["metric"] == 0.612345 for d in back.values())
        assert fields <= set(back["S0"])


def test_the_window_starts_gap_bars_after_the_later_training_end_and_may_be_shorter():
    import numpy as np
    import pandas as pd

    from nova.errors import NovaError
    from nova_trainer.dataset import SymbolData
    from nova_trainer.promotion import window_rows

    days = pd.bdate_range("2026-01-05", periods=100)
    data = SymbolData("AAA", pd.DataFrame({"f": np.zeros(100)}, index=days), np.zeros(100), np.zeros(100))
    assert window_rows(data, [str(days[29].date())], gap=5, window=60) == slice(40, 100)  # the newest 60
    assert window_rows(data, [str(days[29].date()), str(days[59].date())], 5, 60) == slice(65, 100)  # 35 left
    with pytest.raises(NovaError, match="only 5 bar"):
        window_rows(data, [str(days[89].date())], gap=5, window=60)
