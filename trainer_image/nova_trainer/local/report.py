"""The HTML report of a run: per symbol a summary table (net and gross Sharpe, DSR, PBO, holdout,
baseline, parameters, data range) and the figures a quant looks at: out-of-sample equity with
drawdown against buy-and-hold, fold-by-fold metrics, trial Sharpe ratios against the expected
maximum under the null, PBO logits, optimization history, parameter importances, intermediate
values with pruned trials, and the refit model's feature gain. Axes are named by the real metric.

Offline and small: plotly.js (4.8 MB) is inlined once, gzip-compressed and base64-encoded (about
1.9 MB), as is the figures' JSON; the browser inflates both with its own DecompressionStream. So
the file opens with no network and 3 symbols x 100 trials stay well under 5 MB."""

from __future__ import annotations

import base64
import functools
import gzip
import html
import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from nova.spec import ResolvedRun
from nova_trainer.png_figures import best_so_far, equity_and_drawdown, thinned_steps

log = logging.getLogger(__name__)

PNG_NOTE = ("The same figures are written as PNG files next to each model card (<symbol>/<figure>.png), "
            "drawn with matplotlib: plotly's image export needs a Chrome browser that a pod lacks.")

LOADER = """<script>
async function novaInflate(id) {
  const bytes = Uint8Array.from(atob(document.getElementById(id).textContent.trim()), c => c.charCodeAt(0));
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  return await new Response(stream).text();
}
(async () => {
  (0, eval)(await novaInflate("plotly-js-gz"));
  const figures = JSON.parse(await novaInflate("figures-gz"));
  for (const [id, fig] of Object.entries(figures)) {
    Plotly.newPlot(id, fig.data, fig.layout, {responsive: true, displaylogo: false});
  }
})();
</script>"""

STYLE = """<style>
body{font-family:system-ui,sans-serif;margin:1.5em;max-width:1200px}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}
.note{background:#fff4d6;padding:.4em .8em;border-left:4px solid #e0a000}.fig{margin:.5em 0}
</style>"""


def _gz64(text: str) -> str:
    return base64.b64encode(gzip.compress(text.encode(), 6, mtime=0)).decode()


@functools.cache
def _plotly_gz64() -> str:
    """plotly.js compressed once per process (0.6 s)."""
    return _gz64(get_plotlyjs())


class _Page:
    """Collects the HTML and the figures (drawn by the loader once plotly.js is inflated)."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.figures: dict[str, Any] = {}

    def add(self, fig: go.Figure | None, height: int) -> None:
        if fig is None:
            return
        fig.update_layout(height=height, margin={"l": 60, "r": 20, "t": 50, "b": 45}, template="plotly_white")
        fid = f"fig{len(self.figures)}"
        self.figures[fid] = json.loads(pio.to_json(fig, validate=False))
        self.parts.append(f'<div class="fig" id="{fid}" style="height:{height}px"></div>')

    def html(self, text: str) -> None:
        self.parts.append(text)


def _table(rows: list[tuple[str, Any]]) -> str:
    def fmt(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.4g}" if math.isfinite(v) else "-"
        return html.escape(str(v))
    return "<table>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{fmt(v)}</td></tr>" for k, v in rows) + "</table>"


def _summary_rows(card: dict[str, Any], metric: str) -> list[tuple[str, Any]]:
    ev, m = card.get("evaluation") or {}, card.get("metrics") or {}
    hold = card.get("holdout") or {}
    hm = hold.get("metrics") or {}
    data = card.get("data") or {}
    rows: list[tuple[str, Any]] = [
        ("selected trial", f"#{card.get('selected_trial', card.get('best_trial'))} ({card.get('selection', 'best')})"),
        (f"{metric} (walk-forward mean)", card.get("selected_value", card.get("best_value"))),
        ("Sharpe gross / net (annualised, all test bars)",
         f"{ev.get('sharpe_gross', m.get('sharpe', float('nan'))):.3f} / {ev.get('sharpe_net', float('nan')):.3f}"),
        ("cost per unit of turnover (bp) / mean turnover per bar",
         f"{ev.get('cost_bps', '-')} / {ev.get('turnover', float('nan')):.3f}"),
        ("hit rate", ev.get("hit_rate", m.get("hit_rate"))),
        ("Deflated Sharpe Ratio (P[true Sharpe > 0])", ev.get("dsr")),
        ("expected max Sharpe of as many noise trials (annualised)", ev.get("expected_max_sharpe")),
        ("PSR against 0, undeflated", ev.get("psr")),
        (f"PBO (CSCV, S={ev.get('pbo_partitions')}, {ev.get('pbo_combinations')} splits)", ev.get("pbo")),
        ("trials counted by the DSR / with a record", f"{ev.get('trials_tried', '-')} / {ev.get('trials_used', '-')}"),
        ("buy-and-hold Sharpe, same bars (gross / net)",
         f"{ev.get('buy_hold_sharpe', float('nan')):.3f} / {ev.get('buy_hold_sharpe_net', float('nan')):.3f}"),
        ("trials sharing their positions with another", ev.get("identical_trials")),
    ]
    if hold:
        rows += [(f"holdout {hold['start']} .. {hold['end']} ({hold['rows']} bars, scored once): {k}", hm.get(k))
                 for k in (metric, "sharpe", "sharpe_net", "hit_rate", "buy_hold_sharpe") if k in hm]
    else:
        rows.append(("holdout", "off (validation.holdout.enabled: false)"))
    rows += [("parameters", json.dumps(card.get("tuned", {}), default=str)),
             ("data", f"{data.get('start')} .. {data.get('end')}, {data.get('rows')} rows ({data.get('source')})"),
             ("out-of-sample bars", f"{ev.get('start', '-')} .. {ev.get('end', '-')} ({ev.get('bars', '-')} bars)")]
    return rows


def _equity(detail: dict[str, Any]) -> go.Figure:
    dates = detail["dates"]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.05)
    for name, key, color in (("strategy gross", "gross", "#1f77b4"), ("strategy net", "net", "#d62728"),
                             ("buy-and-hold", "buy_hold", "#7f7f7f")):
        curve, dd = equity_and_drawdown(detail[key])
        fig.add_trace(go.Scatter(x=dates, y=curve.astype("float32"), name=name, line={"color": color}), 1, 1)
        if key != "buy_hold":
            fig.add_trace(go.Scatter(x=dates, y=dd.astype("float32"), name=f"drawdown {name.split()[-1]}",
                                     line={"color": color, "width": 1}, fill="tozeroy"), 2, 1)
    fig.update_yaxes(title_text="cumulative log return", row=1, col=1)
    fig.update_yaxes(title_text="drawdown", row=2, col=1)
    fig.update_layout(title="Out-of-sample equity, every walk-forward test bar (folds joined)")
    return fig


def _folds(card: dict[str, Any], metric: str) -> go.Figure | None:
    folds = card.get("folds") or []
    if not folds:
        return None
    names = [f"fold {f['fold']}<br>{f['test_start']}" for f in folds]
    fig = make_subplots(rows=1, cols=2, subplot_titles=(metric, "annualised Sharpe"))
    fig.add_trace(go.Bar(x=names, y=[f["metrics"].get(metric) for f in folds], name=metric), 1, 1)
    for key, label in (("sharpe", "gross"), ("sharpe_net", "net"), ("buy_hold_sharpe", "buy-and-hold")):
        fig.add_trace(go.Bar(x=names, y=[f["metrics"].get(key) for f in folds], name=label), 1, 2)
    fig.update_layout(title="Fold by fold (refit's re-evaluation of the selected parameters)", barmode="group")
    fig.update_yaxes(title_text=metric, row=1, col=1)
    fig.update_yaxes(title_text="Sharpe", row=1, col=2)
    return fig


def _sharpe_distribution(card: dict[str, Any], detail: dict[str, Any]) -> go.Figure:
    ev = card["evaluation"]
    fig = go.Figure(go.Histogram(x=detail["trial_sharpes_net"], nbinsx=40, name="trials"))
    for x, label, color in ((ev["expected_max_sharpe"], "E[max] under the null", "#d62728"),
                            (ev["sharpe_net"], f"selected #{ev['trial']}", "#2ca02c"),
                            (ev["buy_hold_sharpe_net"], "buy-and-hold", "#7f7f7f")):
        fig.add_vline(x=x, line={"color": color, "dash": "dash"}, annotation_text=label)
    fig.update_layout(title=f"Net Sharpe of {len(detail['trial_sharpes_net'])} trials against the best "
                      "expected from as many trials of noise", xaxis_title="annualised net Sharpe",
                      yaxis_title="trials", showlegend=False)
    return fig


def _logits(detail: dict[str, Any], pbo: float | None) -> go.Figure | None:
    hist = detail.get("pbo_logits")
    if not hist:
        return None
    edges = np.asarray(hist["edges"])
    fig = go.Figure(go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=hist["counts"], width=np.diff(edges)))
    fig.add_vline(x=0, line={"color": "#d62728", "dash": "dash"}, annotation_text=f"PBO = {pbo:.2f} left of 0")
    fig.update_layout(title="CSCV: out-of-sample rank logit of the in-sample winner",
                      xaxis_title="logit of relative rank (<= 0: overfit)", yaxis_title="splits")
    return fig


def _history(trials: list[optuna.trial.FrozenTrial], metric: str, maximize: bool) -> go.Figure:
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    x = [t.number for t in done]
    y = np.array([t.value for t in done], dtype="float64")
    best = best_so_far(y, maximize)
    fig = go.Figure([go.Scatter(x=x, y=y, mode="markers", name=metric),
                     go.Scatter(x=x, y=best, mode="lines", name="best so far")])
    fig.update_layout(title="Optimization history", xaxis_title="trial", yaxis_title=f"{metric} (walk-forward mean)")
    return fig


def _intermediate(trials: list[optuna.trial.FrozenTrial], metric: str) -> go.Figure | None:
    fig = go.Figure()
    for t in trials:
        if not t.intermediate_values:
            continue
        steps = thinned_steps(t.intermediate_values)
        pruned = t.state == optuna.trial.TrialState.PRUNED
        fig.add_trace(go.Scatter(
            x=steps.astype("int32"), y=np.array([t.intermediate_values[s] for s in steps], dtype="float32"),
            mode="lines", line={"width": 1, "color": "#d62728" if pruned else "#1f77b4"}, opacity=0.5,
            name=f"#{t.number}{' pruned' if pruned else ''}", showlegend=False))
    if not fig.data:
        return None
    fig.update_layout(title="Intermediate values per boosting round (red: pruned trials)",
                      xaxis_title="step (fold x rounds + round)", yaxis_title=f"valid {metric}")
    return fig


def _importances(study: optuna.Study, metric: str) -> go.Figure | str:
    try:
        imp = optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError) as exc:
        return f"<p>Parameter importances unavailable: {html.escape(str(exc))}</p>"
    items = sorted(imp.items(), key=lambda kv: kv[1])
    fig = go.Figure(go.Bar(x=[v for _, v in items], y=[k for k, _ in items], orientation="h"))
    fig.update_layout(title=f"Parameter importances for {metric} (fANOVA)", xaxis_title="importance")
    return fig


def _feature_gain(card: dict[str, Any]) -> go.Figure | None:
    gain = card.get("feature_gain") or {}
    if not gain:
        return None
    top = sorted(gain.items(), key=lambda kv: kv[1])[-25:]
    fig = go.Figure(go.Bar(x=[v for _, v in top], y=[k for k, _ in top], orientation="h"))
    fig.update_layout(title="Feature gain of the refit model (top 25)", xaxis_title="total gain")
    return fig


def _symbol(page: _Page, run: ResolvedRun, symbol: str, storage: optuna.storages.BaseStorage, out_dir: Path) -> None:
    metric = run.spec.tuning.metric
    page.html(f"<h2>{html.escape(symbol)}</h2>")
    study = optuna.load_study(study_name=run.study_name(symbol), storage=storage)
    trials = study.get_trials(deepcopy=False)
    from nova.object_store import model_root
    from nova_trainer.model_card import read_card

    card = read_card(model_root(run, out_dir), symbol, run.spec.output.object_store) or {}
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in trials) or not card:
        page.html("<p>No complete trial or no model card (see the logs).</p>")
        return
    page.html(_table(_summary_rows(card, metric)))
    ev, detail = card.get("evaluation"), card.get("evaluation_detail")
    if ev and ev.get("note"):
        page.html(f'<p class="note">{html.escape(ev["note"])}</p>')
    if ev and detail:
        page.add(_equity(detail), 520)
    page.add(_folds(card, metric), 360)
    if ev and detail:
        page.add(_sharpe_distribution(card, detail), 360)
        page.add(_logits(detail, ev.get("pbo")), 320)
    page.add(_history(trials, metric, run.spec.tuning.resolved_direction == "maximize"), 380)
    page.add(_intermediate(trials, metric), 400)
    if len(run.spec.tuning.search_space) >= 2 and sum(t.state.name == "COMPLETE" for t in trials) >= 2:
        imp = _importances(study, metric)
        if isinstance(imp, str):
            page.html(imp)
        else:
            page.add(imp, 60 + 40 * len(run.spec.tuning.search_space))
    gain = card.get("feature_gain") or {}
    page.add(_feature_gain(card), 120 + 22 * min(25, len(gain)))


def write_report(run: ResolvedRun, storage: optuna.storages.BaseStorage, out_dir: Path) -> Path:
    page = _Page()
    page.html(f"<h1>Nova run {html.escape(run.name)}</h1><p>{html.escape(PNG_NOTE)}</p>")
    for symbol in run.spec.data.symbols:
        _symbol(page, run, symbol, storage, out_dir)
    body = "\n".join(page.parts)
    doc = ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>Nova report: "
           f"{html.escape(run.name)}</title>{STYLE}</head><body>\n{body}\n"
           f'<script type="application/octet-stream" id="plotly-js-gz">{_plotly_gz64()}</script>\n'
           f'<script type="application/octet-stream" id="figures-gz">{_gz64(json.dumps(page.figures))}</script>\n'
           f"{LOADER}\n</body></html>\n")
    path = out_dir / "report.html"
    path.write_text(doc)
    return path
