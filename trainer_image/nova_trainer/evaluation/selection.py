"""After tuning: every complete trial's net out-of-sample returns, the statistics over them (DSR of
each trial, PBO of the study), and the trial to refit (`tuning.selection`).

N for the DSR counts every trial that was tried to the end or pruned (a pruned trial was a try the
search rejected); V[SR] is the variance of the complete trials' per-bar net Sharpe ratios. With a
horizon of h bars the returns overlap, so the DSR uses T / h observations."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna

from nova.intervals import bars_per_year
from nova.spec import TrainingRunSpec
from nova_trainer.evaluation.baseline import constant_note, identical_trials
from nova_trainer.evaluation.costs import net_returns, turnover
from nova_trainer.evaluation.deflated_sharpe import DeflatedSharpe, deflated_sharpe, sharpe
from nova_trainer.evaluation.oos import STUDY_KEY, Bars, positions_of
from nova_trainer.evaluation.pbo import PboResult, pbo_cscv

log = logging.getLogger(__name__)

TrialState = optuna.trial.TrialState


@dataclass
class StudyEvaluation:
    bars: Bars
    trials: list[optuna.trial.FrozenTrial]  # complete trials with a record of these bars
    positions: np.ndarray  # T x N int8
    net: np.ndarray  # T x N
    n_tried: int
    dsr: list[DeflatedSharpe]
    pbo: PboResult | None
    pbo_error: str | None
    selected: int  # index into trials
    selection: str
    periods_per_year: float
    cost_bps: float

    @property
    def trial(self) -> optuna.trial.FrozenTrial:
        return self.trials[self.selected]

    def gross(self, i: int | None = None) -> np.ndarray:
        i = self.selected if i is None else i
        return self.positions[:, i].astype("float64") * self.bars.fwd_return

    def annual(self, per_bar: float) -> float:
        return per_bar * math.sqrt(self.periods_per_year)

    def trial_sharpes(self) -> np.ndarray:
        """Annualised net Sharpe of every trial (for the distribution plot)."""
        return np.array([self.annual(d.sharpe) for d in self.dsr])

    def summary(self) -> dict[str, Any]:
        """What the card, the status and the report's table say (JSON-able, small)."""
        d = self.dsr[self.selected]
        pos = self.positions[:, self.selected]
        buy_hold = np.ones(len(pos), dtype="int8")
        bh_net = net_returns(self.bars.fwd_return, buy_hold, self.bars.fold_sizes, self.cost_bps)
        out: dict[str, Any] = {
            "selection": self.selection, "trial": self.trial.number, "trials_used": len(self.trials),
            "trials_tried": self.n_tried, "bars": int(len(pos)), "cost_bps": self.cost_bps,
            "sharpe_gross": self.annual(sharpe(self.gross())), "sharpe_net": self.annual(d.sharpe),
            "turnover": float(np.mean(turnover(pos, self.bars.fold_sizes))),
            "hit_rate": float(np.mean(self.gross() > 0)),
            "dsr": d.dsr, "psr": d.psr, "expected_max_sharpe": self.annual(d.expected_max_sharpe),
            "sharpe_std_across_trials": self.annual(math.sqrt(d.sharpe_variance)),
            "skew": d.skew, "kurtosis": d.kurtosis,
            "pbo": self.pbo.pbo if self.pbo else None, "pbo_partitions": self.pbo.partitions if self.pbo else None,
            "pbo_combinations": self.pbo.n_combinations if self.pbo else None,
            "buy_hold_sharpe": self.annual(sharpe(self.bars.fwd_return)),
            "buy_hold_sharpe_net": self.annual(sharpe(bh_net)),
            "identical_trials": identical_trials([self.positions[:, i] for i in range(len(self.trials))]),
            "start": str(self.bars.dates[0].astype("datetime64[D]")),
            "end": str(self.bars.dates[-1].astype("datetime64[D]")),
        }
        note = constant_note(pos)
        if note:
            out["note"] = note
        if self.pbo_error:
            out["pbo_error"] = self.pbo_error
        return out


def _dsr_all(net: np.ndarray, n_tried: int, n_obs: int) -> list[DeflatedSharpe]:
    per_bar = np.array([sharpe(net[:, i]) for i in range(net.shape[1])])
    variance = float(np.var(per_bar, ddof=1)) if len(per_bar) > 1 else 0.0
    return [deflated_sharpe(net[:, i], n_tried, variance, n_obs) for i in range(net.shape[1])]


def evaluate_study(study: optuna.Study, spec: TrainingRunSpec) -> StudyEvaluation | None:
    """The study's statistics, or None when no trial kept an out-of-sample record."""
    attr = study.user_attrs.get(STUDY_KEY)
    if not attr:
        return None
    bars = Bars.from_attr(attr)
    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    trials, rows = [], []
    for t in finished:
        if t.state != TrialState.COMPLETE:
            continue
        pos = positions_of(t.user_attrs, bars.digest)
        if pos is not None and len(pos) == len(bars.fwd_return):
            trials.append(t)
            rows.append(pos)
    if not trials:
        return None
    skipped = sum(t.state == TrialState.COMPLETE for t in finished) - len(trials)
    if skipped:
        log.warning("%s: %d complete trial(s) were scored on other bars (data changed?); left out",
                    study.study_name, skipped)
    positions = np.stack(rows, axis=1)
    cost = spec.evaluation.cost_bps
    net = np.stack([net_returns(p.astype("float64") * bars.fwd_return, p, bars.fold_sizes, cost)
                    for p in rows], axis=1)
    horizon = spec.target.horizon
    n_obs = max(2, len(bars.fwd_return) // horizon)
    n_tried = max(len(trials), len(finished))
    dsr = _dsr_all(net, n_tried, n_obs)
    pbo, pbo_error = None, None
    if len(trials) >= 2:
        try:
            pbo = pbo_cscv(net, spec.evaluation.pbo_partitions)
        except ValueError as exc:
            pbo_error = str(exc)
    else:
        pbo_error = "PBO needs at least 2 complete trials"
    selection = spec.tuning.selection
    if selection == "deflated":
        scores = [d.dsr if math.isfinite(d.dsr) else -1.0 for d in dsr]
        selected = int(np.argmax(scores))
    else:
        selected = _best_index(trials, spec)
    per_year = bars_per_year(spec.data.interval) / horizon
    return StudyEvaluation(bars, trials, positions, net, n_tried, dsr, pbo, pbo_error, selected,
                           selection, per_year, cost)


def _best_index(trials: list[optuna.trial.FrozenTrial], spec: TrainingRunSpec) -> int:
    values = np.array([t.value for t in trials], dtype="float64")
    return int(np.argmax(values) if spec.tuning.resolved_direction == "maximize" else np.argmin(values))
