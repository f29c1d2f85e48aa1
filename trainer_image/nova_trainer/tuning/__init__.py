"""Distributed, pruned tuning: one Optuna study per symbol, shared by every worker.

Split as Optuna splits itself: `search_space` (what to try), `samplers` and `pruners` (how to choose
and when to stop), `storage` (where trials live), `budget` (how many, counted in the storage across
workers), `objective` (one trial = one walk-forward evaluation) and `worker` (the loop)."""
