"""`nova-trainer promote`: score a schedule's new model and its promoted one on the same newest bars,
decide by the contract's rule (nova.promotion.judge), and when the new one wins, point
`<output>/<schedule>/current/<symbol>/` at it (a copy of the model and card, then `promoted.json`).

It runs in the trainer image (a small Job the operator builds), so the operator never loads a model;
it reads the decision from this command's result (the pod's termination message)."""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb

from nova.errors import NovaError
from nova.object_store import symbol_folder
from nova.promotion import POINTER_FILE, PromotionSpec, Scores, current_dir, judge, result_document
from nova.spec import METRIC_DIRECTION, ResolvedRun
from nova_trainer.dataset import SymbolData, load_symbol_data
from nova_trainer.metrics import fold_metrics
from nova_trainer.model_card import CARD_FILE, MODEL_FILE, atomic_write

log = logging.getLogger(__name__)
MIN_WINDOW = 10  # fewer bars than this after both models' training data: no judgement
MESSAGE_LIMIT = 4000  # kubelet keeps 4 KiB of a termination message


def model_files(run_dir: Path, symbol: str) -> tuple[Path, Path]:
    """Where a run's refit wrote `symbol`'s model and card (model_card.write_model's layout): the one
    place promotion spells it."""
    folder = run_dir / symbol_folder(symbol)
    return folder / MODEL_FILE, folder / CARD_FILE


@dataclass
class Model:
    run: str
    model_path: Path
    card_path: Path
    booster: xgb.Booster
    card: dict[str, Any]

    @property
    def train_end(self) -> str:
        return str((self.card.get("data") or {}).get("end") or "")


def load_model(run: str, run_dir: Path, symbol: str) -> Model:
    """A run's model and card, or a NovaError saying which file is missing or broken."""
    model_path, card_path = model_files(run_dir, symbol)
    for path in (model_path, card_path):
        if not path.is_file():
            raise NovaError(f"{path} not found (run {run})")
    try:
        booster = xgb.Booster(model_file=str(model_path))
        card = json.loads(card_path.read_text())
    except (xgb.core.XGBoostError, ValueError) as exc:
        raise NovaError(f"{model_path}: cannot be loaded ({str(exc).splitlines()[0][:200]})") from None
    booster.set_param({"device": "cpu"})  # a few hundred rows: no GPU needed to judge
    return Model(run, model_path, card_path, booster, card)


def window_rows(data: SymbolData, train_ends: list[str], gap: int, window: int) -> slice:
    """The newest `window` rows that come `gap` rows after the last day any of the models trained
    on (fewer when fewer exist, but at least MIN_WINDOW)."""
    days = np.asarray(data.X.index.strftime("%Y-%m-%d"))  # the cards' days, in the bars' own zone
    last = max((end for end in train_ends if end), default=None)
    first = int(np.sum(days <= last)) + gap if last is not None else 0
    available = len(data.y) - first
    if available < MIN_WINDOW:
        raise NovaError(f"{data.symbol}: only {max(available, 0)} bar(s) after the models' training data "
                        f"(last day {last}) and a gap of {gap}; at least {MIN_WINDOW} needed: give each run "
                        "more reserved bars (promotion.window) or wait for newer data")
    return slice(len(data.y) - min(window, available), len(data.y))


def score(model: Model, data: SymbolData, run: ResolvedRun) -> Scores:
    """The run's metric and net Sharpe of `model` on `data` (the window)."""
    names = model.booster.feature_names or []
    missing = [n for n in names if n not in data.X.columns]
    if missing:
        raise NovaError(f"model of run {model.run} needs features this run does not build: {', '.join(missing[:5])}")
    spec = run.spec
    pred = model.booster.predict(xgb.DMatrix(data.X[names] if names else data.X))
    metrics = fold_metrics(pred, data.y, data.fwd_return, spec.target.kind, spec.data.interval,
                           spec.target.horizon, spec.evaluation.cost_bps)
    return Scores(metric=float(metrics[spec.tuning.metric]), sharpe_net=float(metrics["sharpe_net"]))


def _scores(s: Scores | None) -> dict[str, float] | None:
    return None if s is None else {"metric": round(s.metric, 6), "sharpeNet": round(s.sharpe_net, 4)}


def write_pointer(current: Path, model: Model, record: dict[str, Any]) -> None:
    """Copy the model's folder (model, serving files, figures, card last) into `current`, then write
    `promoted.json` last (a reader that finds it finds the files it names)."""
    current.mkdir(parents=True, exist_ok=True)
    files = [p for p in model.model_path.parent.iterdir() if p.is_file() and p != model.card_path]
    for src in [*sorted(files), model.card_path]:
        atomic_write(current / src.name, src.read_bytes())
    manifest = {**record, "model": model.model_path.name, "card": model.card_path.name,
                "source": str(model.model_path)}
    atomic_write(current / POINTER_FILE, json.dumps(manifest, indent=2).encode())


def judge_symbol(run: ResolvedRun, symbol: str, candidate_dir: Path, incumbent: dict[str, str] | None,
                 spec: PromotionSpec, current: Path, now: str) -> dict[str, Any]:
    """One symbol: both models on the same window, the rule, and the pointer when promoted."""
    new = load_model(run.name, candidate_dir, symbol)
    old: Model | None = None
    problem = None
    if incumbent:
        try:
            old = load_model(incumbent["run"], Path(incumbent["dir"]), symbol)
        except NovaError as exc:
            problem = str(exc)
    data = load_symbol_data(run.spec, symbol, reserve=False)
    rows = window_rows(data, [new.train_end] + ([old.train_end] if old else []), spec.gap, spec.window)
    window = data.rows(rows)
    new_scores = score(new, window, run)
    old_scores = None
    if old is not None:
        try:
            old_scores = score(old, window, run)
        except NovaError as exc:
            problem = str(exc)
    maximize = METRIC_DIRECTION[run.spec.tuning.metric] == "maximize"
    verdict = judge(new_scores, old_scores, run.spec.tuning.metric, maximize, spec, problem)
    out: dict[str, Any] = {
        "promoted": verdict.promote, "reason": verdict.reason, "candidate": _scores(new_scores),
        "incumbent": _scores(old_scores), "incumbentRun": incumbent["run"] if incumbent else None,
        "window": f"{window.start}..{window.end} ({len(window.y)} bars)", "model": str(new.model_path)}
    if verdict.promote:
        write_pointer(current, new, {"run": run.name, "symbol": symbol, "metric": run.spec.tuning.metric,
                                     "scores": _scores(new_scores), "replaced": out["incumbentRun"],
                                     "promotedAt": now, "reason": verdict.reason})
        out["current"] = str(current)
    log.info("%s: %s", symbol, verdict.reason)
    return {k: v for k, v in out.items() if v is not None}


def promote(run: ResolvedRun, request: dict[str, Any]) -> dict[str, Any]:
    """Every symbol of the run; one symbol's failure is its own line, not the others'."""
    spec = PromotionSpec.model_validate(request["promotion"])
    root, schedule = request["outputRoot"], request["schedule"]
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    symbols: dict[str, dict[str, Any]] = {}
    for symbol in run.spec.data.symbols:
        try:
            symbols[symbol] = judge_symbol(run, symbol, Path(request["candidateDir"]),
                                           (request.get("incumbents") or {}).get(symbol), spec,
                                           Path(current_dir(root, schedule, symbol)), now)
        except NovaError as exc:
            log.error("%s: not judged: %s", symbol, exc)
            symbols[symbol] = {"promoted": False, "reason": f"not judged: {exc}"[:1500]}
    return result_document(symbols)


def compact(document: dict[str, Any], limit: int = MESSAGE_LIMIT) -> str:
    """The decision as JSON within `limit` characters (a termination message): reasons are shortened
    first, then the paths the operator can rebuild (model, current, window) dropped."""
    text = json.dumps(document, separators=(",", ":"))
    for keep_reason, drop in ((120, ()), (40, ("window",)), (0, ("window", "model", "current"))):
        if len(text) <= limit:
            break
        symbols = {s: {k: (v[:keep_reason] if k == "reason" else v) for k, v in d.items() if k not in drop}
                   for s, d in document["symbols"].items()}
        text = json.dumps({**document, "symbols": symbols}, separators=(",", ":"))
    return text
