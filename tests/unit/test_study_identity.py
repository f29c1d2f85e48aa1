"""A study belongs to the spec that defines what its trials measure: a run deleted and re-created
under the same name with another target or data must not continue the old study silently."""

from __future__ import annotations

import optuna
import pytest

from nova.spec import ResolvedRun, TrainingRunSpec
from nova.study_identity import FINGERPRINT_ATTR, StudyMismatch, fingerprint
from nova_operator.studies import Studies
from nova_trainer.tuning.study import open_study

optuna.logging.set_verbosity(optuna.logging.WARNING)


def run(**spec) -> ResolvedRun:
    body = {"data": {"symbols": ["AAA", "BBB"], "source": "synthetic"}, **spec}
    return ResolvedRun(name="r", namespace="ns", spec=TrainingRunSpec.model_validate(body))


@pytest.fixture
def storage(tmp_path):
    return optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'o.db'}")


def test_what_changes_the_fingerprint():
    base = fingerprint(run())
    assert fingerprint(run(tuning={"trials": 500, "workers": 8})) == base  # budgets and workers: same measure
    assert fingerprint(run(data={"symbols": ["AAA"], "source": "synthetic"})) == base  # studies are per symbol
    for other in (run(target={"horizon": 3}, validation={"walkForward": {"gap": 5}}),
                  run(data={"symbols": ["AAA"], "source": "synthetic", "seed": 8}),
                  run(features={"set": "minimal"}), run(model={"numBoostRound": 10}),
                  run(tuning={"metric": "logloss"})):
        assert fingerprint(other) != base


def test_operator_refuses_a_study_made_for_another_spec(storage):
    studies = Studies()
    assert len(studies.create_studies(run(), storage)) == 2
    assert storage.get_study_user_attrs(storage.get_study_id_from_name("ns.r.AAA"))[FINGERPRINT_ATTR] == \
        fingerprint(run())
    assert studies.create_studies(run(tuning={"trials": 99}), storage) == []  # same measure: kept, no error
    with pytest.raises(StudyMismatch, match="ns.r.AAA.*other data, features, target"):
        Studies().create_studies(run(target={"kind": "return"}, tuning={"metric": "rmse"}), storage)


def test_trainer_refuses_it_too_and_stamps_a_study_it_made(storage):
    study = open_study(run(), "AAA", storage)
    assert study.user_attrs[FINGERPRINT_ATTR] == fingerprint(run())
    assert open_study(run(tuning={"trials": 3}), "AAA", storage).study_name == "ns.r.AAA"
    with pytest.raises(StudyMismatch):
        open_study(run(features={"set": "minimal"}), "AAA", storage)


def test_a_study_without_a_fingerprint_is_adopted(storage):
    optuna.create_study(study_name="ns.r.AAA", storage=storage)  # made by an older Nova
    assert open_study(run(), "AAA", storage).user_attrs[FINGERPRINT_ATTR] == fingerprint(run())
