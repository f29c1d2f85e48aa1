"""Walk-forward splits whose training labels never see the test window.

Test windows are the last `folds * test_size` rows, consecutive and in time order. Each training
window ends `gap` rows before its test window. The label of row i looks `horizon` rows ahead, so
the last training label ends at (test_start - gap - 1) + horizon, which is before test_start exactly
when gap >= horizon: the spec refuses a smaller gap and `check_no_overlap` proves it per split."""

from __future__ import annotations

import math
from dataclasses import dataclass

from nova.errors import DataError


@dataclass(frozen=True)
class Split:
    fold: int
    train_start: int
    train_end: int  # exclusive
    test_start: int
    test_end: int  # exclusive

    @property
    def train(self) -> slice:
        return slice(self.train_start, self.train_end)

    @property
    def test(self) -> slice:
        return slice(self.test_start, self.test_end)


def walk_forward_splits(n_rows: int, folds: int, test_size: int, gap: int, min_train_size: int,
                        expanding: bool = True, symbol: str = "", max_train_size: int | None = None,
                        ) -> list[Split]:
    """Expanding windows start at row 0; rolling ones keep the first window's length. Either is cut
    to its last `max_train_size` rows when that is set."""
    first_test = n_rows - folds * test_size
    needed = min_train_size + gap + folds * test_size
    if first_test - gap < min_train_size:
        raise DataError(
            f"{symbol or 'data'}: {n_rows} labelled rows, but {folds} folds x {test_size} test rows "
            f"+ gap {gap} + minTrainSize {min_train_size} need {needed}; widen data.start/end or "
            "lower validation.walkForward.folds/testSize")
    splits = []
    for k in range(folds):
        test_start = first_test + k * test_size
        train_end = test_start - gap
        train_start = 0 if expanding else max(0, train_end - max(min_train_size, first_test - gap))
        if max_train_size is not None:
            train_start = max(train_start, train_end - max_train_size)
        splits.append(Split(k, train_start, train_end, test_start, test_start + test_size))
    return splits


def check_no_overlap(split: Split, horizon: int) -> None:
    """Raise if any training row's label window [i, i + horizon] reaches the test window."""
    last_label_end = split.train_end - 1 + horizon
    if last_label_end >= split.test_start:
        raise AssertionError(f"fold {split.fold}: training label reaches row {last_label_end}, "
                             f"test starts at {split.test_start}")


@dataclass(frozen=True)
class Holdout:
    """Rows [0, tune_end) are the walk-forward's; [start, n_rows) the holdout; a gap between them."""

    tune_end: int
    start: int
    n_rows: int

    @property
    def rows(self) -> slice:
        return slice(self.start, self.n_rows)

    @property
    def size(self) -> int:
        return self.n_rows - self.start


def holdout_split(n_rows: int, fraction: float, test_size: int, gap: int) -> Holdout:
    """The last max(ceil(fraction * n), test_size) rows, `gap` rows after the tuning rows."""
    size = max(math.ceil(fraction * n_rows), test_size)
    start = n_rows - size
    if start - gap <= 0:
        raise DataError(f"{n_rows} labelled rows cannot hold a holdout of {size} rows after a gap of {gap}; "
                        "widen the date range or set validation.holdout.enabled: false")
    return Holdout(tune_end=start - gap, start=start, n_rows=n_rows)
