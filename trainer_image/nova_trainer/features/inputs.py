"""Which bar columns each feature reads, found by running its group on probe bars that record
every column they are asked for (a declared list could drift from the code; this cannot). Used for
`data.columns: close`: a close-only series keeps exactly the features computed from the close."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from .base import Bars
from .registry import GROUP_OF

PROBE_ROWS = 400


class _ProbeBars(Bars):
    def __init__(self, frame: pd.DataFrame) -> None:
        super().__init__(frame)
        self.used: set[str] = set()

    open = property(lambda self: self._use("open"))
    high = property(lambda self: self._use("high"))
    low = property(lambda self: self._use("low"))
    close = property(lambda self: self._use("close"))
    volume = property(lambda self: self._use("volume"))

    def _use(self, column: str) -> np.ndarray:
        self.used.add(column)
        return self._cols[column]

    def ta(self, func: str, inputs: tuple[str, ...], *params: float):
        self.used.update(inputs)
        return super().ta(func, inputs, *params)


def _probe_frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, PROBE_ROWS)))
    index = pd.date_range("2020-01-01", periods=PROBE_ROWS, freq="B", name="timestamp")
    return pd.DataFrame({"open": close, "high": close * 1.01, "low": close * 0.99, "close": close,
                         "volume": rng.uniform(1e5, 1e6, PROBE_ROWS)}, index=index)


@functools.cache
def inputs_of(name: str) -> frozenset[str]:
    """The bar columns feature `name` is computed from."""
    probe = _ProbeBars(_probe_frame())
    GROUP_OF[name].compute(probe)
    return frozenset(probe.used)


def close_only(names: list[str]) -> list[str]:
    """The features in `names` that read nothing but the close (and the timestamps)."""
    return [n for n in names if inputs_of(n) <= {"close"}]
