"""Walk-forward splits: no training label window ever reaches its test window."""

import numpy as np
import pandas as pd
import pytest

from nova.errors import DataError
from nova_trainer.target import make_target
from nova_trainer.walk_forward import check_no_overlap, walk_forward_splits


@pytest.mark.parametrize("horizon", [1, 3, 10])
@pytest.mark.parametrize("expanding", [True, False])
def test_no_training_label_window_overlaps_test(horizon, expanding):
    n = 1000
    for gap in (horizon, horizon + 4):
        splits = walk_forward_splits(n, folds=5, test_size=60, gap=gap, min_train_size=200, expanding=expanding)
        assert len(splits) == 5
        for s in splits:
            train_rows = np.arange(s.train_start, s.train_end)
            label_window_ends = train_rows + horizon  # row i's label uses close[i + horizon]
            assert label_window_ends.max() < s.test_start
            assert s.test_end - s.test_start == 60 and s.train_end - s.train_start >= 200
            check_no_overlap(s, horizon)
        tests = [np.arange(s.test_start, s.test_end) for s in splits]
        assert np.all(np.diff(np.concatenate(tests)) == 1)  # consecutive, in time order
        assert splits[-1].test_end == n


def test_a_gap_below_the_horizon_is_caught():
    s = walk_forward_splits(500, folds=2, test_size=50, gap=1, min_train_size=100)[0]
    with pytest.raises(AssertionError, match="training label reaches"):
        check_no_overlap(s, horizon=2)


def test_target_uses_the_future_close_only_through_the_label():
    close = pd.Series([10.0, 11.0, 10.5, 12.0, 12.0])
    direction = make_target(close, "direction", 1)
    assert direction.tolist()[:4] == [1.0, 0.0, 1.0, 0.0] and np.isnan(direction.iloc[-1])
    ret = make_target(close, "return", 2)
    assert ret.iloc[0] == pytest.approx(np.log(10.5 / 10.0)) and ret.iloc[-2:].isna().all()


def test_too_little_data_says_what_is_needed():
    with pytest.raises(DataError, match="AAPL: 300 labelled rows.*need 555"):
        walk_forward_splits(300, folds=5, test_size=60, gap=5, min_train_size=250, symbol="AAPL")


@pytest.mark.parametrize("expanding", [True, False])
def test_max_train_size_keeps_the_most_recent_rows(expanding):
    splits = walk_forward_splits(10_000, folds=3, test_size=100, gap=2, min_train_size=200, expanding=expanding,
                                 max_train_size=500)
    for s in splits:
        assert s.train_end - s.train_start == 500 and s.test_start - s.train_end == 2
        check_no_overlap(s, horizon=2)


def test_max_train_size_below_min_train_size_is_refused():
    from nova.errors import SpecError
    from nova.manifest import parse_run

    doc = {"apiVersion": "nova.dev/v1alpha1", "kind": "TrainingRun", "metadata": {"name": "w"},
           "spec": {"data": {"symbols": ["AAPL"]},
                    "validation": {"walkForward": {"minTrainSize": 300, "maxTrainSize": 100}}}}
    with pytest.raises(SpecError, match="maxTrainSize must be >= minTrainSize"):
        parse_run(doc)
