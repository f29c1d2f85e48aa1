"""The Python API: train one symbol end to end (walk-forward evaluation, refit, model + card)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from nova.spec import TrainingRunSpec
from nova_trainer.dataset import SymbolData, load_symbol_data
from nova_trainer.device import init_rmm, resolve_device
from nova_trainer.model_card import fold_table, write_model
from nova_trainer.train import evaluate, fit_final, refit_rounds, score_holdout, xgb_params

log = logging.getLogger(__name__)


def train_symbol(spec: TrainingRunSpec, symbol: str, out_dir: Path | str, tuned: dict[str, Any] | None = None,
                 data: SymbolData | None = None, extra_card: dict[str, Any] | None = None) -> dict[str, Any]:
    """Evaluate `tuned` params walk-forward (before the holdout), score the holdout once, refit on
    all data, write the symbol's folder (model, serving files, card) under `out_dir`, a local folder
    or an object-store prefix (the run's, see nova.object_store.run_prefix)."""
    tuned = tuned or {}
    device = resolve_device(spec.model.device)
    rmm = init_rmm(spec.gpu.rmm.enabled, device.device, spec.gpu.rmm.initial_pool_size,
                   spec.gpu.rmm.maximum_pool_size)
    data = data if data is not None else load_symbol_data(spec, symbol)
    result = evaluate(data, spec, tuned, device)
    rounds = refit_rounds(result)
    holdout = score_holdout(data, spec, tuned, device, rounds)
    booster, features, matrix = fit_final(data, spec, tuned, device, rounds)
    params = {k: v for k, v in xgb_params(spec, tuned, device).items() if k != "eval_metric"}
    card = {
        "symbol": symbol, "params": params, "tuned": tuned, "num_boost_round": rounds,
        "metrics": result.summary, "folds": fold_table(result), "holdout": holdout, "features": features,
        "feature_gain": {k: float(v)  # type: ignore[arg-type]  # one float per feature for total_gain
                         for k, v in booster.get_score(importance_type="total_gain").items()},
        "n_features_total": int(data.X.shape[1]), "data": {
            "source": spec.data.source, "start": data.start, "end": data.end, "rows": len(data.y),
            "interval": spec.data.interval},
        "target": spec.target.model_dump(by_alias=True),
        "validation": spec.validation.model_dump(by_alias=True),
        "device": {"used": device.device, "reason": device.reason, "rmm": rmm, "matrix": matrix},
        **(extra_card or {}),
    }
    path = write_model(str(out_dir), symbol, booster, card, spec.output.object_store, card.get("run"))
    log.info("%s: wrote %s", symbol, path)
    return card
