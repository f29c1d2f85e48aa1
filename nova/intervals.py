"""Bar intervals and how many bars a trading year holds, for annualising (Sharpe ratios) and for
synthetic data; one table for every caller, so a per-round Sharpe and the final one agree."""

from __future__ import annotations

TRADING_DAYS = 252
# US equity session: 6.5 hours a day
BARS_PER_YEAR: dict[str, int] = {"1d": TRADING_DAYS, "1h": TRADING_DAYS * 7, "15m": TRADING_DAYS * 26,
                                 "5m": TRADING_DAYS * 78, "1m": TRADING_DAYS * 390}


def bars_per_year(interval: str) -> int:
    try:
        return BARS_PER_YEAR[interval]
    except KeyError:
        raise ValueError(f"unknown bar interval '{interval}': one of {', '.join(BARS_PER_YEAR)}") from None
