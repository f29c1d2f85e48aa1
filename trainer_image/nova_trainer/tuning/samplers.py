"""Samplers from the spec. Each worker gets its own seed (seed + worker index): identical seeds
would make workers propose identical trials; TPE's constant liar keeps them apart while running."""

from __future__ import annotations

import optuna

from nova.spec import SamplerSpec


def make_sampler(spec: SamplerSpec, worker: int = 0) -> optuna.samplers.BaseSampler:
    seed = None if spec.seed is None else spec.seed + worker
    if spec.type == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True,
                                          n_startup_trials=5)
    if spec.type == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if spec.type == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"tuning.sampler.type '{spec.type}' is not one of tpe, cmaes, random")
