"""Market data sources. Every source returns the same validated frame (see `frame.py`)."""

from __future__ import annotations

import os

import pandas as pd

from nova.errors import DataError
from nova.spec import DataSpec
from nova_trainer.data import bundled, files, synthetic
from nova_trainer.data.frame import OHLCV, clip_range, validate_bars

__all__ = ["OHLCV", "load_bars", "validate_bars"]

DATA_URL_ENV = "NOVA_DATA_URL"


def load_bars(spec: DataSpec, symbol: str) -> pd.DataFrame:
    """Load, validate and clip one symbol's bars as the spec says."""
    if spec.source == "bundled":
        raw, origin = bundled.load(symbol)
        if spec.interval != "1d":
            raise DataError(f"data.interval '{spec.interval}': bundled data is daily; use 1d")
    elif spec.source == "synthetic":
        raw, origin = synthetic.generate(symbol, spec.bars, spec.seed, spec.interval,
                                         start=spec.start or "2010-01-04"), "synthetic"
    elif spec.source == "file":
        raw, origin = files.load(files.data_uri(spec), symbol, spec.object_store)
    elif spec.source == "postgres":
        from nova_trainer.data import postgres

        url = os.environ.get(DATA_URL_ENV)
        if not url:
            raise DataError(f"data.source 'postgres' needs the database URL in ${DATA_URL_ENV} "
                            "(set from data.secretRef in a cluster)")
        raw, origin = postgres.load(url, symbol, spec.table, spec.query)
    else:  # pragma: no cover - the spec's Literal forbids it
        raise DataError(f"unknown data.source '{spec.source}'")
    bars = validate_bars(raw, symbol, origin, spec.interval, spec.date_format, spec.adjust, spec.columns,
                         spec.timezone)
    return clip_range(bars, symbol, spec.start, spec.end, origin)
