"""Building XGBoost's input: QuantileDMatrix where possible, DMatrix with a logged reason otherwise.

QuantileDMatrix sketches the features into `max_bin` histogram bins while it reads them, so the
float copy of the matrix never has to live next to the quantised one: that is what cuts peak memory.
`ParquetBatches` streams a prep shard batch by batch into it, never holding the raw matrix."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import xgboost as xgb

log = logging.getLogger(__name__)


def make_matrices(X_train: pd.DataFrame, y_train: np.ndarray, X_test: pd.DataFrame | None,
                  y_test: np.ndarray | None, quantile: bool, max_bin: int, nthread: int | None = None,
                  ) -> tuple[xgb.DMatrix, xgb.DMatrix | None, str]:
    """(train, test, kind) where test shares the train matrix's bin edges (ref=train).

    `nthread` is the model's: building the matrix would otherwise take every core, including the
    one the prep sidecar (or the prefetch thread) is using at that moment."""
    threads = nthread or -1
    train: xgb.DMatrix
    test: xgb.DMatrix | None
    if quantile:
        try:
            train = xgb.QuantileDMatrix(X_train, y_train, max_bin=max_bin, nthread=threads)
            test = (xgb.QuantileDMatrix(X_test, y_test, ref=train, max_bin=max_bin, nthread=threads)
                    if X_test is not None else None)
            return train, test, "QuantileDMatrix"
        except (xgb.core.XGBoostError, TypeError, ValueError) as exc:
            log.warning("QuantileDMatrix refused (%s); falling back to DMatrix", exc)
    train = xgb.DMatrix(X_train, y_train, nthread=threads)
    test = xgb.DMatrix(X_test, y_test, nthread=threads) if X_test is not None else None
    return train, test, "DMatrix"


class ParquetBatches(xgb.DataIter):
    """Feeds one or more Parquet shards to XGBoost in row batches (for QuantileDMatrix)."""

    def __init__(self, paths: Sequence[str], label: str, batch_rows: int = 100_000,
                 columns: Sequence[str] | None = None) -> None:
        self._paths = list(paths)
        self._label = label
        self._batch_rows = batch_rows
        self._columns = list(columns) if columns is not None else None
        self._batches: Iterator[pa.RecordBatch] | None = None
        super().__init__(release_data=True)

    def _batch_iter(self) -> Iterator[pa.RecordBatch]:
        for path in self._paths:
            file = pq.ParquetFile(path)
            cols = None if self._columns is None else [*self._columns, self._label]
            yield from file.iter_batches(batch_size=self._batch_rows, columns=cols)

    def reset(self) -> None:
        self._batches = None

    def next(self, input_data) -> bool:
        if self._batches is None:
            self._batches = self._batch_iter()
        batch = next(self._batches, None)
        if batch is None:
            return False
        label = batch.column(self._label).to_numpy()
        feature_names = [n for n in batch.schema.names if n != self._label]
        data = np.column_stack([batch.column(n).to_numpy(zero_copy_only=False) for n in feature_names])
        input_data(data=data.astype(np.float32, copy=False), label=label, feature_names=feature_names)
        return True
