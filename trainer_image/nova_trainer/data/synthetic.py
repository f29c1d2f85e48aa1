"""A seeded synthetic market: regime-switching volatility, fat tails, overnight gaps, and volume
that rises with absolute returns. Each symbol gets its own stream derived from (seed, symbol), so a
universe is reproducible and symbols differ. Vectorised: no Python loop over bars."""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

from nova.intervals import bars_per_year

FREQ = {"1d": "B", "1h": "h", "15m": "15min", "5m": "5min", "1m": "min"}


def generate(symbol: str, bars: int, seed: int, interval: str = "1d",
             start: str | pd.Timestamp = "2010-01-04") -> pd.DataFrame:
    rng = np.random.default_rng([seed, zlib.crc32(symbol.encode())])
    per_year = bars_per_year(interval)
    # Two-state Markov volatility regime (calm / stressed) drawn from run lengths, vectorised.
    lengths = rng.geometric(1 / 120, size=bars // 20 + 2)
    states = np.resize([0, 1], len(lengths))
    regime = np.repeat(states, lengths)[:bars]
    annual_vol = np.where(regime == 0, rng.uniform(0.12, 0.22), rng.uniform(0.35, 0.6))
    sigma = annual_vol / np.sqrt(per_year)
    drift = rng.uniform(-0.02, 0.12) / per_year
    shocks = rng.standard_t(df=4, size=bars) / np.sqrt(2.0)  # fat tails, unit variance
    # A little momentum so that the target is learnable but weak, as in real markets.
    momentum = pd.Series(shocks).rolling(5, min_periods=1).mean().shift(1).fillna(0).to_numpy() * 0.08
    log_ret = drift + sigma * (shocks + momentum)
    gaps = rng.standard_normal(bars) * sigma * 0.3
    close = 50.0 * np.exp(np.cumsum(log_ret))
    open_ = np.concatenate([[50.0], close[:-1]]) * np.exp(gaps)
    span = np.abs(rng.standard_normal((2, bars))) * sigma * close * 0.6
    high = np.maximum(open_, close) + span[0]
    low = np.maximum(np.minimum(open_, close) - span[1], 0.01)
    base_volume = rng.uniform(2e5, 5e6)
    volume = base_volume * (1 + 25 * np.abs(log_ret)) * rng.lognormal(0, 0.3, bars)
    index = pd.date_range(start=start, periods=bars, freq=FREQ[interval], name="timestamp")
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close,
                         "volume": np.round(volume)}, index=index)
