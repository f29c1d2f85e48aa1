"""Turning the spec's search space into Optuna suggestions."""

from __future__ import annotations

from typing import Any

import optuna

from nova.spec import ParamSpace


def suggest(trial: optuna.Trial, space: dict[str, ParamSpace]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, p in space.items():
        if p.type == "categorical":
            assert p.choices is not None  # ParamSpace's validator: a categorical has choices
            params[name] = trial.suggest_categorical(name, p.choices)
            continue
        assert p.low is not None and p.high is not None  # ParamSpace's validator: a range has bounds
        if p.type == "int":
            params[name] = trial.suggest_int(name, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
        else:
            params[name] = trial.suggest_float(name, p.low, p.high, step=None if p.log else p.step, log=p.log)
    return params
