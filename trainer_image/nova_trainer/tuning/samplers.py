"""Samplers from the spec, seeded per trial.

A seed per worker (seed + worker index) made worker 0 of two runs at once, or of a run and its
resume, draw the very same parameters. Here every trial gets its own seed, derived from the spec's
seed, the study's name and the trial's number: the storage hands out each number once, so no two
trials of a study ever share a draw, whichever process runs them; a run alone is still the same
run for the same seed. TPE's constant liar keeps running trials apart."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from nova.spec import SamplerSpec


def trial_seed(seed: int, study_name: str, number: int) -> int:
    """A 32-bit seed for one trial of one study (stable across processes and Python versions)."""
    digest = hashlib.sha256(f"{seed}:{study_name}:{number}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


class PerTrialSeeded(optuna.samplers.BaseSampler):
    """Delegates each trial to a sampler built for it with `trial_seed`. Samplers keep no state of
    their own between trials that matters here (TPE and random read the history from the study;
    CMA-ES keeps its state in the study's attributes), so building one per trial loses nothing."""

    def __init__(self, build: Callable[[int | None], optuna.samplers.BaseSampler], seed: int) -> None:
        self._build, self._seed = build, seed
        self._fallback = build(seed)  # for calls outside a trial (e.g. Optuna asking for a search space)
        self._per_trial: dict[tuple[str, int], optuna.samplers.BaseSampler] = {}

    def _for(self, study: optuna.Study, trial: FrozenTrial) -> optuna.samplers.BaseSampler:
        key = (study.study_name, trial.number)
        if key not in self._per_trial:
            self._per_trial[key] = self._build(trial_seed(self._seed, study.study_name, trial.number))
        return self._per_trial[key]

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial
                                    ) -> dict[str, BaseDistribution]:
        return self._for(study, trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return self._for(study, trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._for(study, trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._for(study, trial).before_trial(study, trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        sampler = self._per_trial.pop((study.study_name, trial.number), None) or self._fallback
        sampler.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._fallback.reseed_rng()


def _builder(kind: str) -> Callable[[int | None], optuna.samplers.BaseSampler]:
    if kind == "tpe":
        return lambda seed: optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True,
                                                       n_startup_trials=5)
    if kind == "cmaes":
        return lambda seed: optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if kind == "random":
        return lambda seed: optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"tuning.sampler.type '{kind}' is not one of tpe, cmaes, random")


def make_sampler(spec: SamplerSpec) -> optuna.samplers.BaseSampler:
    """Without a seed, each sampler draws from fresh entropy; with one, per trial (see above)."""
    build = _builder(spec.type)
    return build(None) if spec.seed is None else PerTrialSeeded(build, spec.seed)
