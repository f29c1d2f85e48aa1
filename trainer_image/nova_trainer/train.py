"""Walk-forward training of one parameter set on one symbol: the unit that tuning repeats.

Each fold: optional top-N selection on the fold's training window only, QuantileDMatrix for train
and test (test quantised with the train bin edges), `hist` on the resolved device, early stopping on
the test window (as `xgb.cv` does), and extra per-round callbacks (the pruner) from the caller."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xgboost as xgb

from nova.errors import DataError
from nova.intervals import bars_per_year
from nova.spec import METRIC_DIRECTION, TrainingRunSpec
from nova_trainer.dataset import SymbolData
from nova_trainer.device import DeviceChoice
from nova_trainer.evaluation.oos import OutOfSample
from nova_trainer.matrices import make_matrices
from nova_trainer.metrics import fold_metrics, positions, sharpe_ratio, strategy_returns, summarize
from nova_trainer.walk_forward import Holdout, Split, check_no_overlap, holdout_split, walk_forward_splits

log = logging.getLogger(__name__)

# Tuned names that are spelled differently in xgb.train's params.
ALIASES = {"learning_rate": "eta", "reg_lambda": "lambda", "reg_alpha": "alpha"}
SELECTION_ROUNDS = 30

FoldCallbacks = Callable[[int], list[xgb.callback.TrainingCallback]]


@dataclass
class FoldResult:
    fold: int
    train_rows: int
    test_rows: int
    test_start: str
    test_end: str
    best_iteration: int
    rounds: int
    metrics: dict[str, float]
    features: list[str]


@dataclass
class WalkForwardResult:
    folds: list[FoldResult]
    matrix: str
    device: str
    summary: dict[str, float] = field(default_factory=dict)
    oos: OutOfSample | None = None

    @property
    def rounds(self) -> int:
        return sum(f.rounds for f in self.folds)

    def value(self, metric: str) -> float:
        return self.summary[metric]


@functools.cache
def gradient_sampling_supported(device: str) -> bool:
    """Ask the installed XGBoost once whether it accepts gradient-based sampling with hist here."""
    rng = np.random.default_rng(0)
    X, y = rng.random((64, 3)), rng.integers(0, 2, 64)
    try:
        xgb.train({"tree_method": "hist", "device": device, "sampling_method": "gradient_based",
                   "subsample": 0.5, "objective": "binary:logistic", "verbosity": 0},
                  xgb.DMatrix(X, y), num_boost_round=1)
        return True
    except xgb.core.XGBoostError as exc:
        log.warning("gradient-based sampling refused by this XGBoost on %s (%s); using uniform "
                    "sampling", device, str(exc).splitlines()[0])
        return False


def xgb_params(spec: TrainingRunSpec, tuned: dict[str, Any], device: DeviceChoice) -> dict[str, Any]:
    """Fixed params from the spec, tuned params over them, and what Nova itself decides."""
    params: dict[str, Any] = {"eta": 0.1, "max_depth": 4, **spec.model.params}
    params.update({ALIASES.get(k, k): v for k, v in tuned.items()})
    params.update({"tree_method": "hist", "device": device.device, "verbosity": 0,
                   "max_bin": int(params.get("max_bin", spec.model.max_bin))})
    if spec.target.kind == "direction":
        params.update(objective="binary:logistic", eval_metric=["logloss", "auc"])
    else:
        params.update(objective="reg:squarederror", eval_metric=["rmse"])
    if spec.model.nthread:
        params["nthread"] = spec.model.nthread
    if spec.model.gradient_sampling and gradient_sampling_supported(device.device):
        params["sampling_method"] = "gradient_based"
    return params


def observation(metric: str) -> tuple[str, bool]:
    """(evals_log key, maximize) for the metric each round reports."""
    return f"valid-{metric}", METRIC_DIRECTION[metric] == "maximize"


def _custom_metric(metric: str, kind: str, fwd_test: np.ndarray, horizon: int, interval: str
                   ) -> Callable[[np.ndarray, xgb.DMatrix], tuple[str, float]] | None:
    """Per-round metrics XGBoost lacks: accuracy and the strategy Sharpe on the test window."""
    if metric == "sharpe":
        per_year = bars_per_year(interval)  # the same annualisation as the fold's final Sharpe

        def sharpe(predt: np.ndarray, dmat: xgb.DMatrix) -> tuple[str, float]:
            if len(predt) != len(fwd_test):  # the training set is evaluated too; skip it
                return "sharpe", 0.0
            return "sharpe", sharpe_ratio(strategy_returns(predt, fwd_test, kind), per_year, horizon)
        return sharpe
    if metric == "accuracy":
        def accuracy(predt: np.ndarray, dmat: xgb.DMatrix) -> tuple[str, float]:
            label = dmat.get_label()
            hit = (predt > 0.5) == (label > 0.5) if kind == "direction" else np.sign(predt) == np.sign(label)
            return "accuracy", float(np.mean(hit))
        return accuracy
    return None


def select_top_features(data: SymbolData, n: int, params: dict[str, Any], quantile: bool) -> list[str]:
    """Rank features by total gain from a short fit on `data` (a training window only)."""
    columns = list(data.X.columns)
    if n >= len(columns):
        return columns
    dtrain, _, _ = make_matrices(data.X, data.y, None, None, quantile, params["max_bin"], params.get("nthread"))
    quick = {k: v for k, v in params.items() if k != "eval_metric"}
    booster = xgb.train(quick, dtrain, num_boost_round=SELECTION_ROUNDS)
    gain = booster.get_score(importance_type="total_gain")
    ranked = sorted(columns, key=lambda c: (-float(gain.get(c, 0.0)), columns.index(c)))  # type: ignore[arg-type]  # total_gain: a float per feature
    return ranked[:n]


def holdout_for(spec: TrainingRunSpec, n_rows: int) -> Holdout | None:
    """The untouched final bars of validation.holdout, or None when it is off."""
    if not spec.validation.holdout.enabled:
        return None
    wf = spec.validation.walk_forward
    return holdout_split(n_rows, spec.validation.holdout.fraction, wf.test_size, wf.gap)


def tuning_data(data: SymbolData, spec: TrainingRunSpec) -> SymbolData:
    """The rows trials, selection and feature ranking may see: everything before the holdout's gap."""
    holdout = holdout_for(spec, len(data.y))
    return data if holdout is None else data.rows(slice(0, holdout.tune_end))


def splits_for(spec: TrainingRunSpec, n_rows: int, symbol: str) -> list[Split]:
    wf = spec.validation.walk_forward
    try:
        splits = walk_forward_splits(n_rows, wf.folds, wf.test_size, wf.gap, wf.min_train_size,
                                     wf.expanding, symbol, wf.max_train_size)
    except DataError as exc:
        if not spec.validation.holdout.enabled:
            raise
        raise DataError(f"{exc} (validation.holdout keeps the last bars apart: lower "
                        "validation.holdout.fraction or set validation.holdout.enabled: false)") from None
    for split in splits:
        check_no_overlap(split, spec.target.horizon)
    return splits


def evaluate(data: SymbolData, spec: TrainingRunSpec, tuned: dict[str, Any], device: DeviceChoice,
             metric: str | None = None, fold_callbacks: FoldCallbacks | None = None) -> WalkForwardResult:
    """Train and score every walk-forward fold with one parameter set, on the bars before the
    holdout; the result keeps the position taken on every test bar."""
    metric = metric or spec.tuning.metric
    data = tuning_data(data, spec)
    params = xgb_params(spec, tuned, device)
    key, maximize = observation(metric)
    results: list[FoldResult] = []
    matrix_kind = ""
    held: list[np.ndarray] = []
    splits = splits_for(spec, len(data.y), data.symbol)
    for split in splits:
        train, test = data.rows(split.train), data.rows(split.test)
        columns = list(data.X.columns)
        if spec.features.select_top_n:
            columns = select_top_features(train, spec.features.select_top_n, params, spec.model.quantile_d_matrix)
        dtrain, dtest, matrix_kind = make_matrices(train.X[columns], train.y, test.X[columns], test.y,
                                                   spec.model.quantile_d_matrix, params["max_bin"],
                                                   params.get("nthread"))
        callbacks: list[xgb.callback.TrainingCallback] = []
        if spec.model.early_stopping_rounds:
            callbacks.append(xgb.callback.EarlyStopping(
                rounds=spec.model.early_stopping_rounds, metric_name=metric, data_name="valid",
                maximize=maximize, save_best=False))
        if fold_callbacks:
            callbacks.extend(fold_callbacks(split.fold))
        booster = xgb.train(params, dtrain, spec.model.num_boost_round,
                            evals=[(dtest, "valid")], callbacks=callbacks, verbose_eval=False,
                            custom_metric=_custom_metric(metric, spec.target.kind, test.fwd_return,
                                                         spec.target.horizon, spec.data.interval))
        rounds = booster.num_boosted_rounds()
        best = int(booster.attr("best_iteration") or rounds - 1)
        pred = booster.predict(dtest, iteration_range=(0, best + 1))
        held.append(positions(pred, spec.target.kind))
        results.append(FoldResult(
            fold=split.fold, train_rows=len(train.y), test_rows=len(test.y),
            test_start=str(test.X.index[0].date()), test_end=str(test.X.index[-1].date()),
            best_iteration=best, rounds=rounds, features=columns,
            metrics=fold_metrics(pred, test.y, test.fwd_return, spec.target.kind, spec.data.interval,
                                 spec.target.horizon, spec.evaluation.cost_bps)))
    summary = summarize([r.metrics for r in results])
    test_rows = np.concatenate([np.arange(s.test_start, s.test_end) for s in splits])
    oos = OutOfSample(np.concatenate(held), np.asarray(data.fwd_return[test_rows], dtype="float64"),
                      data.X.index[test_rows].to_numpy(dtype="datetime64[ns]"),
                      [s.test_end - s.test_start for s in splits])
    return WalkForwardResult(results, matrix_kind, device.device, summary, oos)


def score_holdout(data: SymbolData, spec: TrainingRunSpec, tuned: dict[str, Any], device: DeviceChoice,
                  num_rounds: int) -> dict[str, Any] | None:
    """Train on every bar before the holdout's gap, score the holdout once; None when it is off."""
    holdout = holdout_for(spec, len(data.y))
    if holdout is None:
        return None
    train = data.rows(slice(0, holdout.tune_end))
    test = data.rows(holdout.rows)
    booster, columns, _ = fit_final(train, spec, tuned, device, num_rounds)
    dtest = xgb.DMatrix(test.X[columns], nthread=spec.model.nthread or -1)
    pred = booster.predict(dtest)
    metrics = fold_metrics(pred, test.y, test.fwd_return, spec.target.kind, spec.data.interval,
                           spec.target.horizon, spec.evaluation.cost_bps)
    return {"start": test.start, "end": test.end, "rows": len(test.y), "train_rows": len(train.y),
            "gap": spec.validation.walk_forward.gap, "metrics": metrics}


def fit_final(data: SymbolData, spec: TrainingRunSpec, tuned: dict[str, Any], device: DeviceChoice,
              num_rounds: int) -> tuple[xgb.Booster, list[str], str]:
    """Refit on the whole window with the rounds the folds chose; selection on all data."""
    params = xgb_params(spec, tuned, device)
    columns = list(data.X.columns)
    if spec.features.select_top_n:
        columns = select_top_features(data, spec.features.select_top_n, params, spec.model.quantile_d_matrix)
    dtrain, _, kind = make_matrices(data.X[columns], data.y, None, None, spec.model.quantile_d_matrix,
                                    params["max_bin"], params.get("nthread"))
    booster = xgb.train(params, dtrain, max(1, num_rounds))
    return booster, columns, kind


def refit_rounds(result: WalkForwardResult) -> int:
    """Rounds for the final model: the mean best iteration over folds, plus one."""
    return int(round(np.mean([f.best_iteration for f in result.folds]))) + 1
