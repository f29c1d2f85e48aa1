"""Rules the operator and the trainer share live once, in the contract: trial counting, storage
error classification, bars per year. Each is checked here, and both sides are shown to use it."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
import sqlalchemy.exc
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from nova.budget import RETRY_HISTORY_ATTR, trial_counts
from nova.errors import StorageError
from nova.intervals import BARS_PER_YEAR, bars_per_year
from nova.storage_errors import describe, is_permanent, is_transient, is_transient_chain, storage_error

DIST = {"eta": FloatDistribution(0.01, 0.3)}


def _study() -> optuna.Study:
    study = optuna.create_study(direction="maximize")
    for value in (0.55, 0.62):
        study.add_trial(create_trial(params={"eta": value / 10}, distributions=DIST, value=value))
    study.add_trial(create_trial(state=TrialState.PRUNED, params={"eta": 0.1}, distributions=DIST,
                                 intermediate_values={1: 0.3}))
    study.add_trial(create_trial(state=TrialState.FAIL, params={"eta": 0.1}, distributions=DIST))
    study.add_trial(create_trial(state=TrialState.FAIL, params={"eta": 0.1}, distributions=DIST))
    study.add_trial(create_trial(state=TrialState.WAITING, params={}, distributions={},
                                 system_attrs={RETRY_HISTORY_ATTR: [4]}))
    return study


def test_operator_and_trainer_count_a_study_the_same_way() -> None:
    from nova_operator.studies import summarize
    from nova_trainer.tuning.budget import progress

    study = _study()
    trainer = progress(study)
    operator = summarize("AAA", "ns.r.AAA", study.get_trials(), maximize=True)
    assert (trainer.complete, trainer.pruned, trainer.failed, trainer.waiting) == (2, 1, 1, 1)
    assert trainer.committed == 5 and not trainer.done(4)
    fields = ("complete", "pruned", "failed", "running", "waiting", "best_value", "best_params")
    assert {f: getattr(operator, f) for f in fields} == {f: getattr(trainer, f) for f in fields}


def test_best_follows_the_direction() -> None:
    study = _study()
    assert trial_counts(study.get_trials(), maximize=True).best_value == 0.62
    assert trial_counts(study.get_trials(), maximize=False).best_value == 0.55


def _db_error(message: str) -> sqlalchemy.exc.OperationalError:
    return sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception(message))


def test_storage_errors_classified_once() -> None:
    refused = _db_error("connection refused\nIs the server running?")
    wrong_password = _db_error('password authentication failed for user "nova"')
    no_role = _db_error('role "x" does not exist')
    assert is_transient(refused) and not is_permanent(refused)
    assert is_permanent(wrong_password) and not is_transient(wrong_password)
    assert is_permanent(no_role)
    assert describe(refused) == "connection refused"
    wrapped = RuntimeError("while handling")
    wrapped.__context__ = refused
    assert is_transient_chain(wrapped) and not is_transient(wrapped)
    assert not is_transient(ValueError("a bug is not an outage"))


def test_storage_error_is_typed_and_never_shows_the_password() -> None:
    err = storage_error("postgresql+psycopg://nova:hunter2@db:5432/nova",
                        _db_error("password authentication failed for user nova (password=hunter2)"))
    assert isinstance(err, StorageError) and err.permanent
    assert "db:5432" in str(err) and "hunter2" not in str(err)
    assert StorageError("x").permanent is False


def test_bars_per_year_is_one_table() -> None:
    from nova_trainer.data import synthetic

    assert bars_per_year("1d") == 252 and bars_per_year("1h") == 252 * 7
    with pytest.raises(ValueError, match="unknown bar interval '2d'"):
        bars_per_year("2d")
    assert set(BARS_PER_YEAR) >= {"1d", "1h", "15m", "5m", "1m"}
    assert not hasattr(synthetic, "BARS_PER_YEAR")


@pytest.mark.parametrize("interval", ["1d", "1h", "5m"])
def test_per_round_sharpe_is_annualised_like_the_final_one(interval: str) -> None:
    """The Sharpe the pruner sees each round and the fold's reported Sharpe use the same bars per
    year (train.py once hard-coded 252, so intraday per-round values were off by sqrt(7..390))."""
    from nova_trainer.metrics import fold_metrics
    from nova_trainer.train import _custom_metric

    rng = np.random.default_rng(0)
    pred = rng.uniform(size=200)
    fwd = rng.normal(0.001, 0.01, size=200)
    label = (fwd > 0).astype(float)
    per_round = _custom_metric("sharpe", "direction", fwd, 1, interval)
    assert per_round is not None
    _, value = per_round(pred, None)  # type: ignore[arg-type]
    assert value == pytest.approx(fold_metrics(pred, label, fwd, "direction", interval, 1)["sharpe"])
