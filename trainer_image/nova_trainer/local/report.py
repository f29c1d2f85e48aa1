"""The HTML report of a local run: Optuna's own plots per symbol plus the refit model's feature gain.
plotly.js is embedded once so the file opens offline."""

from __future__ import annotations

import html
import json
from pathlib import Path

import optuna
import plotly.graph_objects as go

from nova.spec import ResolvedRun


def _feature_importance(card_path: Path) -> go.Figure | None:
    if not card_path.exists():
        return None
    card = json.loads(card_path.read_text())
    gain = card.get("feature_gain") or {}
    if not gain:
        return None
    top = sorted(gain.items(), key=lambda kv: kv[1])[-25:]
    fig = go.Figure(go.Bar(x=[v for _, v in top], y=[k for k, _ in top], orientation="h"))
    fig.update_layout(title="Feature importance (total gain, refit model)", height=600)
    return fig


def write_report(run: ResolvedRun, storage: optuna.storages.BaseStorage, out_dir: Path) -> Path:
    from optuna import visualization as vis

    parts = [f"<h1>Nova run {html.escape(run.name)}</h1>"]
    first = True

    def add(fig: go.Figure | None) -> None:
        nonlocal first
        if fig is not None:
            parts.append(fig.to_html(full_html=False, include_plotlyjs=first))
            first = False

    for symbol in run.spec.data.symbols:
        parts.append(f"<h2>{html.escape(symbol)}</h2>")
        study = optuna.load_study(study_name=run.study_name(symbol), storage=storage)
        complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
        if not complete:
            parts.append("<p>No complete trial.</p>")
            continue
        add(vis.plot_optimization_history(study))
        add(vis.plot_intermediate_values(study))
        if len(complete) >= 2 and len(run.spec.tuning.search_space) >= 2:
            try:
                add(vis.plot_param_importances(study))
            except (RuntimeError, ValueError) as exc:
                parts.append(f"<p>Parameter importances unavailable: {html.escape(str(exc))}</p>")
        add(_feature_importance(out_dir / f"{symbol}.card.json"))
    path = out_dir / "report.html"
    path.write_text("<!DOCTYPE html><html><head><meta charset='utf-8'><title>Nova report</title></head><body>"
                    + "\n".join(parts) + "</body></html>")
    return path
