"""A real study (tiny synthetic data, in-process worker, in-memory storage) through refit and the
report: out-of-sample records per trial, DSR/PBO/net Sharpe in the card and the study, the holdout
scored apart, `tuning.selection`, and a report that opens offline."""

from __future__ import annotations

import base64
import gzip
import json
import re

import optuna
import pytest
from plotly.offline import get_plotlyjs

from nova.spec import TrainingRun, resolve
from nova_trainer.dataset import load_symbol_data
from nova_trainer.evaluation.oos import STUDY_KEY, Bars, positions_of
from nova_trainer.local.report import write_report
from nova_trainer.model_card import status_evaluation
from nova_trainer.refit import EVALUATION_KEY, refit_symbol
from nova_trainer.train import holdout_for
from nova_trainer.tuning.study import open_study
from nova_trainer.tuning.worker import run_worker
from tests.conftest import small_run_manifest

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _tuned(selection: str = "best", trials: int = 8):
    run = resolve(TrainingRun.model_validate(small_run_manifest(
        name="rep", trials=trials, tuning={"selection": selection, "pruner": {"type": "none"}})))
    storage = optuna.storages.InMemoryStorage()
    open_study(run, "AAA", storage)
    data = load_symbol_data(run.spec, "AAA")
    run_worker(run, storage, 0, iter([("AAA", data)]))
    return run, storage, data


@pytest.fixture(scope="module")
def tuned():
    return _tuned()


def test_every_trial_keeps_its_out_of_sample_positions_and_never_sees_the_holdout(tuned):
    run, storage, data = tuned
    study = optuna.load_study(study_name=run.study_name("AAA"), storage=storage)
    bars = Bars.from_attr(study.user_attrs[STUDY_KEY])
    assert len(bars.fwd_return) == 2 * 80 and bars.fold_sizes == [80, 80]
    holdout = holdout_for(run.spec, len(data.y))
    assert bars.dates[-1] < data.X.index[holdout.tune_end].to_datetime64()  # test bars end before the gap
    for trial in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        pos = positions_of(trial.user_attrs, bars.digest)
        assert pos is not None and len(pos) == 160 and set(pos.tolist()) <= {-1, 1}


def test_refit_writes_dsr_pbo_net_sharpe_holdout_and_report(tuned, tmp_path):
    run, storage, data = tuned
    card = refit_symbol(run, "AAA", storage, tmp_path, data=data)
    ev = card["evaluation"]
    assert ev["trials_used"] == 8 and ev["pbo_partitions"] == 16 and ev["pbo_combinations"] == 12870
    assert 0.0 <= ev["dsr"] <= 1.0 and 0.0 <= ev["pbo"] <= 1.0 and ev["expected_max_sharpe"] > 0
    assert ev["sharpe_net"] < ev["sharpe_gross"]  # 1 bp per unit of turnover costs something
    assert card["selected_trial"] == card["best_trial"] == ev["trial"]
    hold = card["holdout"]
    assert hold["rows"] == 90 and hold["start"] > ev["end"] and "sharpe_net" in hold["metrics"]
    study = optuna.load_study(study_name=run.study_name("AAA"), storage=storage)
    assert study.user_attrs[EVALUATION_KEY]["dsr"] == ev["dsr"]
    status = status_evaluation(card)
    assert {"dsr", "pbo", "sharpeNet", "holdoutSharpeNet", "expectedMaxSharpe"} <= set(status)
    from nova.status import SymbolEvaluation
    assert SymbolEvaluation.model_validate(status).dsr == pytest.approx(ev["dsr"], abs=1e-4)

    text = write_report(run, storage, tmp_path).read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert not re.search(r"<(script|link)[^>]+(src|href)=", text)  # nothing fetched: opens offline
    blobs = dict(re.findall(r'id="([a-z-]+-gz)">([^<]+)</script>', text))
    assert gzip.decompress(base64.b64decode(blobs["plotly-js-gz"])).decode() == get_plotlyjs()
    figures = json.loads(gzip.decompress(base64.b64decode(blobs["figures-gz"])))
    assert set(figures) == set(re.findall(r'<div class="fig" id="(fig\d+)"', text))
    titles = [f["layout"]["title"]["text"] for f in figures.values()]
    for expected in ("Out-of-sample equity", "Fold by fold", "Net Sharpe of", "CSCV", "Optimization history",
                     "Intermediate values", "Parameter importances", "Feature gain"):
        assert any(t.startswith(expected) for t in titles), (expected, titles)
    axis_titles = json.dumps([f["layout"] for f in figures.values()])
    assert "Objective Value" not in axis_titles and "auc (walk-forward mean)" in axis_titles
    assert all(200 <= f["layout"]["height"] <= 700 for f in figures.values())
    for needle in ("Deflated Sharpe Ratio", "PBO", "holdout", "buy-and-hold"):
        assert needle in text
    _inflate_like_a_browser(tmp_path, text, len(figures))


def _inflate_like_a_browser(tmp_path, text: str, n_figures: int) -> None:
    """Run the report's own inflate function in Node (same atob/Blob/DecompressionStream web APIs as
    a browser) on the embedded blobs; skipped where Node is absent."""
    import shutil
    import subprocess

    node = shutil.which("node")
    if node is None:
        pytest.skip("node not installed: the browser-side inflate is checked only where it is")
    loader = re.search(r"<script>\s*(async function novaInflate.*?\n})", text, re.S).group(1)
    blobs = dict(re.findall(r'id="([a-z-]+-gz)">([^<]+)</script>', text))
    (tmp_path / "blobs.json").write_text(json.dumps(blobs))
    script = tmp_path / "inflate.js"
    script.write_text(
        "const blobs = JSON.parse(require('fs').readFileSync(process.argv[2], 'utf8'));\n"
        "globalThis.document = {getElementById: id => ({textContent: blobs[id]})};\n"
        f"{loader}\n"
        "(async () => { const js = await novaInflate('plotly-js-gz');"
        " const figs = JSON.parse(await novaInflate('figures-gz'));"
        " console.log(js.length, Object.keys(figs).length); })();\n")
    out = subprocess.run([node, str(script), str(tmp_path / "blobs.json")], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(len(get_plotlyjs())), str(n_figures)]


def test_deflated_selection_refits_the_trial_with_the_highest_dsr(tmp_path):
    run, storage, data = _tuned("deflated", trials=6)
    from nova_trainer.evaluation.selection import evaluate_study
    study = optuna.load_study(study_name=run.study_name("AAA"), storage=storage)
    ev = evaluate_study(study, run.spec)
    top = max(range(len(ev.trials)), key=lambda i: ev.dsr[i].dsr)
    card = refit_symbol(run, "AAA", storage, tmp_path, data=data)
    assert card["selection"] == "deflated" and card["selected_trial"] == ev.trials[top].number
    assert card["evaluation"]["dsr"] == pytest.approx(max(d.dsr for d in ev.dsr))


def test_refit_writes_the_reports_figures_as_png_beside_the_card(tuned, tmp_path):
    """A cluster run has no browser for plotly's image export: the refit draws the same figures with
    matplotlib, each a real PNG of a sensible size, with axes named by the real metric."""
    from matplotlib.image import imread

    from nova_trainer import png_figures

    run, storage, data = tuned
    card = refit_symbol(run, "AAA", storage, tmp_path, data=data)
    folder = tmp_path / "AAA"  # the symbol's folder, beside card.json
    pngs = sorted(p.name for p in folder.glob("*.png"))
    assert pngs == sorted(f"{name}.png" for name in png_figures.FIGURES), pngs
    for name in pngs:
        pixels = imread(folder / name)
        height, width = pixels.shape[:2]
        assert width == 1000 and 250 <= height <= 700, (name, pixels.shape)
        assert pixels[..., :3].std() > 0.05, f"{name} is blank"
    trials = optuna.load_study(study_name=run.study_name("AAA"), storage=storage).get_trials()
    history = png_figures.history(card, "auc", trials)
    assert history.axes[0].get_ylabel() == "auc (walk-forward mean)"
    assert png_figures.intermediate(card, "auc", trials).axes[0].get_ylabel() == "valid auc"


def test_a_figure_that_fails_to_draw_never_fails_the_refit(tmp_path, monkeypatch):
    from nova_trainer import png_figures

    def broken(card, metric, trials):
        raise ValueError("no data to draw")

    monkeypatch.setitem(png_figures.FIGURES, "history", broken)
    written = png_figures.write_figures("AAA", {"metric": "auc"}, [], lambda n, b: (tmp_path / n).write_bytes(b))
    assert written == [] and not list(tmp_path.iterdir())
