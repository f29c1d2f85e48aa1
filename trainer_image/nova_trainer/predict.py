"""Check a refit model without a server: load it from the run's output (a folder or the run's
object-store prefix), build the features of the latest bars from the same data source, print the
model's output and the position it implies, per bar.

Every bar gets a signal, the newest ones too: their label lies in the future, so training never saw
them, and they are the ones a user acts on.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from nova.errors import NovaError
from nova.object_store import symbol_folder
from nova.spec import ResolvedRun
from nova_trainer import store as stores
from nova_trainer.data import load_bars
from nova_trainer.dataset import _features
from nova_trainer.metrics import positions
from nova_trainer.model_card import CARD_FILE, MODEL_FILE, read_card


def load_model(root: str, symbol: str, run: ResolvedRun) -> tuple[xgb.Booster, dict[str, Any]]:
    card = read_card(root, symbol, run.spec.output.object_store)
    folder = stores.place(root, run.spec.output.object_store, role="output").child(symbol_folder(symbol))
    if card is None:
        raise NovaError(f"no model for {symbol} under {root} (no {symbol_folder(symbol)}/{CARD_FILE}): run "
                        "`nova run` (or wait for the refit) first, or point --out at the run's folder")
    booster = xgb.Booster()
    booster.load_model(bytearray(stores.read_bytes(folder.child(MODEL_FILE))))
    return booster, card


def features_for(run: ResolvedRun, symbol: str, names: list[str], last: int | None = None) -> pd.DataFrame:
    """The model's features (in its order) for the latest `last` bars of the run's data source."""
    bars = load_bars(run.spec.data, symbol)
    features = _features(bars, run.spec, symbol)
    missing = [n for n in names if n not in features.columns]
    if missing:
        raise NovaError(f"{symbol}: the model needs features the data cannot give: {missing[:10]}")
    out = features[names]
    return out.iloc[-last:] if last else out


def predict(run: ResolvedRun, symbol: str, root: str, last: int | None = None) -> pd.DataFrame:
    """One row per bar: timestamp, the model's output (probability of a rise, or the return) and
    the signal (+1 long, -1 short, 0 flat)."""
    booster, card = load_model(root, symbol, run)
    names = list(booster.feature_names or card.get("features") or [])
    X = features_for(run, symbol, names, last)
    pred = booster.predict(xgb.DMatrix(X, feature_names=names))
    return pd.DataFrame({"prediction": pred.astype("float64"),
                         "signal": positions(np.asarray(pred), run.spec.target.kind)}, index=X.index)


def print_predictions(frame: pd.DataFrame, kind: str) -> None:
    head = "P(rise)" if kind == "direction" else "return"
    print(f"{'timestamp':<20} {head:>10} {'signal':>6}")
    for ts, row in frame.iterrows():
        stamp = ts.strftime("%Y-%m-%d") if ts.hour == ts.minute == 0 else ts.strftime("%Y-%m-%d %H:%M")
        print(f"{stamp:<20} {row['prediction']:>10.4f} {int(row['signal']):>+6d}")
