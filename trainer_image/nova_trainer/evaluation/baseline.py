"""What a strategy must beat, and a warning when it is a baseline in disguise.

Buy-and-hold over the same test bars is the strategy that is always long; a model that is long (or
short) on nearly every bar earns buy-and-hold's Sharpe whatever its AUC says (seen on AAPL in the
quickstart: several trials with an identical Sharpe and hit rate)."""

from __future__ import annotations

import numpy as np

CONSTANT_SHARE = 0.95


def constant_note(positions: np.ndarray) -> str | None:
    """A sentence when the positions are (almost) always the same, else None."""
    if len(positions) == 0:
        return None
    long_share = float(np.mean(positions > 0))
    short_share = float(np.mean(positions < 0))
    if long_share >= CONSTANT_SHARE:
        return (f"effectively constant: long on {long_share:.0%} of test bars; its edge over "
                "buy-and-hold comes from the few other bars")
    if short_share >= CONSTANT_SHARE:
        return f"effectively constant: short on {short_share:.0%} of test bars (inverse buy-and-hold)"
    return None


def identical_trials(position_rows: list[np.ndarray]) -> int:
    """How many trials share their positions with another trial (same strategy, other params)."""
    seen: dict[bytes, int] = {}
    for row in position_rows:
        key = row.tobytes()
        seen[key] = seen.get(key, 0) + 1
    return sum(n for n in seen.values() if n > 1)
