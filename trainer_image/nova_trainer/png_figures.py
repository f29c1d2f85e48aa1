"""The report's figures as PNG files next to each model card, for a cluster run (and a local one).

plotly's image export (kaleido 1.x) drives a Chrome browser that it downloads at first use; a pod
has neither that browser nor the network, and a browser would double the trainer image. So the
PNGs are drawn with matplotlib's Agg backend (no display, no browser) from the same card and study
the HTML report reads, with the same titles and axes named by the real metric. The series both
draw (equity, drawdown, best-so-far) are computed here once and used by the report too."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import optuna

log = logging.getLogger(__name__)

MAX_POINTS_PER_TRIAL = 80
TOP_FEATURES = 25
WIDTH_IN = 10.0
DPI = 100


def equity_and_drawdown(returns: Any) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative log return, and its distance below the running peak (the start counts as a peak)."""
    curve = np.cumsum(np.asarray(returns, dtype="float64"))
    return curve, curve - np.maximum.accumulate(np.maximum(curve, 0.0))


def best_so_far(values: Any, maximize: bool) -> np.ndarray:
    y = np.asarray(values, dtype="float64")
    return np.maximum.accumulate(y) if maximize else np.minimum.accumulate(y)


def thinned_steps(intermediate: dict[int, float]) -> np.ndarray:
    """At most MAX_POINTS_PER_TRIAL steps of a trial's curve, first and last kept."""
    steps = np.array(sorted(intermediate))
    if len(steps) > MAX_POINTS_PER_TRIAL:
        steps = steps[np.linspace(0, len(steps) - 1, MAX_POINTS_PER_TRIAL).astype(int)]
    return steps


def _figure(height_in: float, rows: int = 1, cols: int = 1, **kw: Any) -> tuple[Any, Any]:
    from matplotlib.figure import Figure  # the object API: no pyplot, no global state, no display

    fig = Figure(figsize=(WIDTH_IN, height_in), dpi=DPI, layout="constrained")
    return fig, fig.subplots(rows, cols, **kw)


def equity(card: dict[str, Any], metric: str, trials: list[optuna.trial.FrozenTrial]) -> Any | None:
    detail = card.get("evaluation_detail")
    if not detail:
        return None
    dates = np.asarray(detail["dates"], dtype="datetime64[D]")
    fig, (top, bottom) = _figure(5.2, 2, 1, sharex=True, height_ratios=[0.7, 0.3])
    for name, key, color in (("strategy gross", "gross", "#1f77b4"), ("strategy net", "net", "#d62728"),
                             ("buy-and-hold", "buy_hold", "#7f7f7f")):
        curve, drawdown = equity_and_drawdown(detail[key])
        top.plot(dates, curve, label=name, color=color, linewidth=1)
        if key != "buy_hold":
            bottom.fill_between(dates, drawdown, 0, color=color, alpha=0.3, label=f"drawdown {name.split()[-1]}")
    top.set_ylabel("cumulative log return")
    bottom.set_ylabel("drawdown")
    top.legend(loc="upper left")
    fig.suptitle("Out-of-sample equity, every walk-forward test bar (folds joined)")
    return fig


def folds(card: dict[str, Any], metric: str, trials: list[optuna.trial.FrozenTrial]) -> Any | None:
    rows = card.get("folds") or []
    if not rows:
        return None
    names = [f"fold {f['fold']}\n{f['test_start']}" for f in rows]
    fig, (left, right) = _figure(3.6, 1, 2)
    x = np.arange(len(rows))
    left.bar(x, [_num(f["metrics"].get(metric)) for f in rows])
    left.set_title(metric)
    left.set_ylabel(metric)
    for i, (key, label) in enumerate((("sharpe", "gross"), ("sharpe_net", "net"), ("buy_hold_sharpe", "buy-and-hold"))):
        right.bar(x + (i - 1) * 0.27, [_num(f["metrics"].get(key)) for f in rows], width=0.27, label=label)
    right.set_title("annualised Sharpe")
    right.set_ylabel("Sharpe")
    right.legend()
    for ax in (left, right):
        ax.set_xticks(x, names, fontsize=7)
    fig.suptitle("Fold by fold (refit's re-evaluation of the selected parameters)")
    return fig


def sharpe_distribution(card: dict[str, Any], metric: str, trials: list[optuna.trial.FrozenTrial]) -> Any | None:
    ev, detail = card.get("evaluation"), card.get("evaluation_detail")
    if not ev or not detail:
        return None
    sharpes = detail["trial_sharpes_net"]
    fig, ax = _figure(3.6)
    ax.hist(sharpes, bins=40, color="#1f77b4")
    for x, label, color in ((ev["expected_max_sharpe"], "E[max] under the null", "#d62728"),
                            (ev["sharpe_net"], f"selected #{ev['trial']}", "#2ca02c"),
                            (ev["buy_hold_sharpe_net"], "buy-and-hold", "#7f7f7f")):
        ax.axvline(x, color=color, linestyle="--", label=label)
    ax.set_xlabel("annualised net Sharpe")
    ax.set_ylabel("trials")
    ax.legend()
    ax.set_title(f"Net Sharpe of {len(sharpes)} trials against the best expected from as many trials of noise")
    return fig


def pbo_logits(card: dict[str, Any], metric: str, trials: list[optuna.trial.FrozenTrial]) -> Any | None:
    ev, hist = card.get("evaluation") or {}, (card.get("evaluation_detail") or {}).get("pbo_logits")
    if not hist or ev.get("pbo") is None:
        return None
    edges = np.asarray(hist["edges"])
    fig, ax = _figure(3.2)
    ax.bar((edges[:-1] + edges[1:]) / 2, hist["counts"], width=np.diff(edges))
    ax.axvline(0, color="#d62728", linestyle="--", label=f"PBO = {ev['pbo']:.2f} left of 0")
    ax.set_xlabel("logit of relative rank (<= 0: overfit)")
    ax.set_ylabel("splits")
    ax.legend()
    ax.set_title("CSCV: out-of-sample rank logit of the in-sample winner")
    return fig


def history(card: dict[str, Any], metric: str, trials: list[optuna.trial.FrozenTrial]) -> Any | None:
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        return None
    x, y = [t.number for t in done], [t.value for t in done]
    fig, ax = _figure(3.8)
    ax.scatter(x, y, s=10, label=metric)
    ax.plot(x, best_so_far(y, card.get("direction", "maximize") == "maximize"), color="#d62728", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"{metric} (walk-forward mean)")
    ax.legend()
    ax.set_title("Optimization history")
    return fig


def intermediate(card: dict[str, Any], metric: str, trials: list[optuna.trial.FrozenTrial]) -> Any | None:
    from matplotlib.collections import LineCollection

    lines, colors = [], []
    for t in trials:
        if t.intermediate_values:
            steps = thinned_steps(t.intermediate_values)
            lines.append(np.column_stack([steps, [t.intermediate_values[s] for s in steps]]))
            colors.append("#d62728" if t.state == optuna.trial.TrialState.PRUNED else "#1f77b4")
    if not lines:
        return None
    fig, ax = _figure(4.0)
    ax.add_collection(LineCollection(lines, colors=colors, linewidths=1, alpha=0.5))
    ax.autoscale()
    ax.set_xlabel("step (fold x rounds + round)")
    ax.set_ylabel(f"valid {metric}")
    ax.set_title("Intermediate values per boosting round (red: pruned trials)")
    return fig


def importances(card: dict[str, Any], metric: str, trials: list[optuna.trial.FrozenTrial]) -> Any | None:
    """fANOVA importances, as the report computes them, on an in-memory copy of the study's trials."""
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(done) < 2 or len({name for t in done for name in t.params}) < 2:
        return None
    study = optuna.create_study(direction=card.get("direction", "maximize"))
    study.add_trials(done)
    try:
        imp = optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError) as exc:
        log.info("parameter importances unavailable: %s", exc)
        return None
    items = sorted(imp.items(), key=lambda kv: kv[1])
    fig, ax = _figure(max(2.5, 0.8 + 0.4 * len(items)))
    ax.barh([k for k, _ in items], [v for _, v in items])
    ax.set_xlabel("importance")
    ax.set_title(f"Parameter importances for {metric} (fANOVA)")
    return fig


def feature_gain(card: dict[str, Any], metric: str, trials: list[optuna.trial.FrozenTrial]) -> Any | None:
    gain = card.get("feature_gain") or {}
    if not gain:
        return None
    top = sorted(gain.items(), key=lambda kv: kv[1])[-TOP_FEATURES:]
    fig, ax = _figure(1.2 + 0.22 * len(top))
    ax.barh([k for k, _ in top], [v for _, v in top])
    ax.set_xlabel("total gain")
    ax.set_title(f"Feature gain of the refit model (top {TOP_FEATURES})")
    return fig


FIGURES: dict[str, Callable[[dict[str, Any], str, list[optuna.trial.FrozenTrial]], Any | None]] = {
    "equity": equity, "folds": folds, "sharpe-distribution": sharpe_distribution, "pbo-logits": pbo_logits,
    "history": history, "intermediate": intermediate, "importances": importances, "feature-gain": feature_gain,
}


def render(card: dict[str, Any], trials: list[optuna.trial.FrozenTrial]) -> dict[str, bytes]:
    """PNG bytes per figure name, for the figures this card and study have data for."""
    metric = card.get("metric", "objective")
    out = {}
    for name, draw in FIGURES.items():
        fig = draw(card, metric, trials)
        if fig is not None:
            buf = io.BytesIO()
            fig.savefig(buf, format="png")
            out[name] = buf.getvalue()
    return out


def write_figures(symbol: str, card: dict[str, Any], trials: list[optuna.trial.FrozenTrial],
                  write: Callable[[str, bytes], None]) -> list[str]:
    """`<figure>.png` in the symbol's folder beside its card, each given to `write(name, data)` (an
    atomic write into a folder or an object store); the names written. A figure that fails to draw
    is logged and skipped: pictures never fail a refit."""
    try:
        pngs = render(card, trials)
    except Exception as exc:  # noqa: BLE001 - a plotting bug must not lose the model that was just written
        log.warning("%s: figures not drawn: %s", symbol, exc)
        return []
    names = []
    for name, data in pngs.items():
        write(f"{name}.png", data)
        names.append(f"{name}.png")
    return names


def _num(value: Any) -> float:
    return float("nan") if value is None else float(value)
