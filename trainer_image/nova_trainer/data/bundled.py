"""Real daily OHLCV shipped inside PyPI packages, so a run works offline.

- `bokeh-sampledata`: AAPL, IBM, MSFT (2000-2013), GOOG (2004-2013), FB (2012-2013). Its OHLC are
  not split-adjusted (AAPL halves on 2005-02-28); we scale OHLC by adj_close/close so returns and
  indicators see no fake crashes. Volume is left as traded.
- `arch`: S&P 500 (`SPX`) and NASDAQ Composite (`IXIC`) index OHLCV, 1999-2018.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from nova.errors import DataError

BOKEH_SYMBOLS = ("AAPL", "IBM", "MSFT", "GOOG", "FB")
ARCH_SYMBOLS = {"SPX": "sp500", "IXIC": "nasdaq"}


def _bokeh(symbol: str) -> pd.DataFrame:
    from bokeh_sampledata import stocks

    raw = pd.DataFrame(getattr(stocks, symbol))
    factor = raw["adj_close"] / raw["close"]
    out = pd.DataFrame({
        "timestamp": pd.to_datetime(raw["date"]),
        "open": raw["open"] * factor, "high": raw["high"] * factor,
        "low": raw["low"] * factor, "close": raw["adj_close"],
        "volume": raw["volume"].astype("float64"),
    })
    return out


def _arch(symbol: str) -> pd.DataFrame:
    import importlib

    module = importlib.import_module(f"arch.data.{ARCH_SYMBOLS[symbol]}")
    raw = module.load()
    factor = raw["Adj Close"] / raw["Close"]
    return pd.DataFrame({
        "timestamp": raw.index, "open": raw["Open"] * factor, "high": raw["High"] * factor,
        "low": raw["Low"] * factor, "close": raw["Adj Close"], "volume": raw["Volume"].astype("float64"),
    }).reset_index(drop=True)


def available() -> list[str]:
    return [*BOKEH_SYMBOLS, *ARCH_SYMBOLS]


def load(symbol: str) -> tuple[pd.DataFrame, str]:
    loader: Callable[[str], pd.DataFrame]
    if symbol in BOKEH_SYMBOLS:
        loader, origin = _bokeh, "bundled: bokeh-sampledata"
    elif symbol in ARCH_SYMBOLS:
        loader, origin = _arch, "bundled: arch"
    else:
        raise DataError(f"unknown symbol '{symbol}' for data.source 'bundled'; available: {available()}")
    return loader(symbol), origin
