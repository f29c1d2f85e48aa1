"""The model artifact and its card: what a person needs to trust or reproduce a model."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from dataclasses import asdict
from pathlib import Path
from typing import Any

import xgboost as xgb

from nova.secrets import mask


def versions() -> dict[str, str]:
    import numpy
    import optuna
    import pandas

    import nova

    return {"nova": nova.__version__, "xgboost": xgb.__version__, "optuna": optuna.__version__,
            "pandas": pandas.__version__, "numpy": numpy.__version__, "python": platform.python_version()}


def atomic_write(path: Path, data: bytes) -> None:
    """Write then rename, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_model(out_dir: Path, symbol: str, booster: xgb.Booster, card: dict[str, Any]) -> Path:
    """Write `<symbol>.ubj` then `<symbol>.card.json` (both atomically); `card` gains the file name."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model_path = out_dir / f"{symbol}.ubj"
    atomic_write(model_path, bytes(booster.save_raw("ubj")))
    card.update(model_file=model_path.name, written_at=dt.datetime.now(dt.UTC).isoformat(), versions=versions())
    atomic_write(out_dir / f"{symbol}.card.json", mask(json.dumps(card, indent=2, default=str)).encode())
    return model_path


def fold_table(result) -> list[dict[str, Any]]:
    return [{k: v for k, v in asdict(f).items() if k != "features"} for f in result.folds]


def status_evaluation(card: dict[str, Any]) -> dict[str, Any] | None:
    """The few numbers of the card the operator shows per symbol (nova.status.SymbolEvaluation);
    small, since they travel in the refit's termination message."""
    ev = card.get("evaluation")
    if not ev:
        return None
    holdout = (card.get("holdout") or {}).get("metrics") or {}
    out = {"selection": ev["selection"], "trial": ev["trial"], "trials": ev["trials_tried"],
           "sharpeGross": ev["sharpe_gross"], "sharpeNet": ev["sharpe_net"], "dsr": ev["dsr"],
           "expectedMaxSharpe": ev["expected_max_sharpe"], "pbo": ev["pbo"],
           "holdoutSharpeNet": holdout.get("sharpe_net"), "buyHoldSharpe": ev["buy_hold_sharpe"],
           "note": ev.get("note")}
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items() if v is not None}
