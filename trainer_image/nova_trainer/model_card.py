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

from nova.object_store import symbol_folder
from nova.secrets import mask
from nova.spec import ObjectStoreSpec


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


MODEL_FILE = "model.ubj"
MODEL_JSON = "model.json"
CARD_FILE = "card.json"


def write_model(root: str, symbol: str, booster: xgb.Booster, card: dict[str, Any],
                store: ObjectStoreSpec | None = None, run: dict[str, Any] | None = None) -> str:
    """Write one symbol's folder under `root` (a local folder or an object-store prefix):
    model.ubj, model.json, the serving files (model-settings.json for MLServer, inferenceservice.yaml
    for KServe) and, last, card.json: a folder with a card is complete. Each object is written
    atomically (temporary key, then renamed or copied). Returns the folder's URI; `card` gains
    model_file (relative to root), model_uri and written_at."""
    from nova_trainer import serving
    from nova_trainer import store as stores

    base = stores.place(root, store, role="output")
    folder = base.child(symbol_folder(symbol))
    card.update(model_file=f"{symbol_folder(symbol)}/{MODEL_FILE}", model_uri=folder.uri,
                written_at=dt.datetime.now(dt.UTC).isoformat(), versions=versions())
    if base.remote:
        stores.check_bucket(base, "write")
    files = {
        MODEL_FILE: bytes(booster.save_raw("ubj")),
        MODEL_JSON: bytes(booster.save_raw("json")),
        serving.MLSERVER_FILE: serving.model_settings(symbol, card, run).encode(),
        serving.KSERVE_FILE: serving.inference_service(symbol, serving.storage_uri(folder.uri, symbol), run).encode(),
        CARD_FILE: mask(json.dumps(card, indent=2, default=str)).encode(),  # last: the done marker
    }
    for name, data in files.items():
        stores.write_atomic(folder.child(name), data, tmp_root=base)
    return folder.uri


def read_card(root: str, symbol: str, store: ObjectStoreSpec | None = None) -> dict[str, Any] | None:
    """A symbol's card under `root`, or None when its folder is not complete."""
    from nova_trainer import store as stores

    p = stores.place(root, store, role="output").child(symbol_folder(symbol), CARD_FILE)
    if stores.info(p).type != stores.pafs.FileType.File:
        return None
    return json.loads(stores.read_bytes(p))


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
