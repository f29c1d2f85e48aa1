"""Refit: the best trial's parameters trained on the whole window, written with its model card."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna

from nova.errors import NovaError
from nova.spec import ResolvedRun
from nova_trainer.api import train_symbol
from nova_trainer.dataset import SymbolData


def refit_symbol(run: ResolvedRun, symbol: str, storage: optuna.storages.BaseStorage, out_dir: Path,
                 data: SymbolData | None = None) -> dict[str, Any]:
    try:
        study = optuna.load_study(study_name=run.study_name(symbol), storage=storage)
    except KeyError:
        raise NovaError(f"{symbol}: no study {run.study_name(symbol)} in the storage (was it tuned?)") from None
    try:
        best = study.best_trial
    except ValueError:
        raise NovaError(f"{symbol}: study {study.study_name} has no complete trial to refit") from None
    states = [t.state.name for t in study.get_trials(deepcopy=False)]
    extra = {"study": study.study_name, "best_trial": best.number, "best_value": best.value,
             "metric": run.spec.tuning.metric, "direction": run.spec.tuning.resolved_direction,
             "trials": {s: states.count(s) for s in sorted(set(states))},
             "run": {"name": run.name, "namespace": run.namespace, "generation": run.generation}}
    return train_symbol(run.spec, symbol, out_dir, tuned=dict(best.params), data=data, extra_card=extra)
