"""Refit: the selected trial's parameters trained on the whole window, written with its model card.

The trial is chosen by `tuning.selection` from the study's out-of-sample records, and the study's
statistics (DSR, PBO, net Sharpe, baseline) go into the card and into the study's `evaluation`
attribute, where the operator and the report read them."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from nova.errors import NovaError
from nova.object_store import symbol_folder
from nova.spec import ResolvedRun
from nova_trainer import store as stores
from nova_trainer.api import train_symbol
from nova_trainer.dataset import SymbolData
from nova_trainer.evaluation.selection import StudyEvaluation, evaluate_study
from nova_trainer.png_figures import write_figures

log = logging.getLogger(__name__)

EVALUATION_KEY = "evaluation"
LOGIT_BINS = 40


def detail(ev: StudyEvaluation) -> dict[str, Any]:
    """What the report draws: equity curves of the selected trial, every trial's net Sharpe, the
    PBO logits as a histogram (12,870 values at S=16 would bloat the card)."""
    dates = ev.bars.dates.astype("datetime64[D]").astype(str).tolist()
    out: dict[str, Any] = {
        "dates": dates, "fold_sizes": ev.bars.fold_sizes,
        "gross": np.round(ev.gross(), 7).tolist(), "net": np.round(ev.net[:, ev.selected], 7).tolist(),
        "buy_hold": np.round(ev.bars.fwd_return, 7).tolist(),
        "trial_numbers": [t.number for t in ev.trials],
        "trial_sharpes_net": np.round(ev.trial_sharpes(), 5).tolist(),
    }
    if ev.pbo is not None:
        finite = ev.pbo.logits[np.isfinite(ev.pbo.logits)]
        counts, edges = np.histogram(finite, bins=LOGIT_BINS)
        out["pbo_logits"] = {"counts": counts.tolist(), "edges": np.round(edges, 4).tolist()}
    return out


def refit_symbol(run: ResolvedRun, symbol: str, storage: optuna.storages.BaseStorage, out_dir: Path | str,
                 data: SymbolData | None = None) -> dict[str, Any]:
    try:
        study = optuna.load_study(study_name=run.study_name(symbol), storage=storage)
    except KeyError:
        raise NovaError(f"{symbol}: no study {run.study_name(symbol)} in the storage (was it tuned?)") from None
    try:
        best = study.best_trial
    except ValueError:
        raise NovaError(f"{symbol}: study {study.study_name} has no complete trial to refit") from None
    ev = evaluate_study(study, run.spec)
    chosen = best if ev is None else ev.trial
    if ev is None:
        log.warning("%s: no trial kept an out-of-sample record; no DSR/PBO, refitting the best trial", symbol)
    states = [t.state.name for t in study.get_trials(deepcopy=False)]
    extra: dict[str, Any] = {
        "study": study.study_name, "best_trial": best.number, "best_value": best.value,
        "selected_trial": chosen.number, "selected_value": chosen.value,
        "selection": run.spec.tuning.selection, "metric": run.spec.tuning.metric,
        "direction": run.spec.tuning.resolved_direction,
        "trials": {s: states.count(s) for s in sorted(set(states))},
        "run": {"name": run.name, "namespace": run.namespace, "generation": run.generation}}
    if ev is not None:
        summary = ev.summary()
        study.set_user_attr(EVALUATION_KEY, summary)
        extra.update(evaluation=summary, evaluation_detail=detail(ev))
        log.info("%s: trial %d selected (%s); net Sharpe %.2f, DSR %.3f (expected max Sharpe under "
                 "the null %.2f), PBO %s", symbol, chosen.number, ev.selection, summary["sharpe_net"],
                 summary["dsr"], summary["expected_max_sharpe"],
                 "n/a" if summary["pbo"] is None else f"{summary['pbo']:.2f}")
    card = train_symbol(run.spec, symbol, out_dir, tuned=dict(chosen.params), data=data, extra_card=extra)
    base = stores.place(str(out_dir), run.spec.output.object_store, role="output")
    folder = base.child(symbol_folder(symbol))
    write_figures(symbol, card, study.get_trials(deepcopy=False),
                  lambda name, data: stores.write_atomic(folder.child(name), data, tmp_root=base))
    return card
