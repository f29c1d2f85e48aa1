"""Seeding a local run's studies from a previous local run (`nova run --warm-start-from runs/<old>`),
by the contract's rule (nova.warm_start), the operator's own for tuning.warmStartFrom."""

from __future__ import annotations

import logging
from pathlib import Path

import optuna

from nova.errors import SpecError
from nova.spec import ResolvedRun
from nova.warm_start import WARM_START_ATTR, WarmStartPlan, plan, source_study_name

log = logging.getLogger(__name__)


def previous_run(folder: Path) -> tuple[ResolvedRun, str]:
    """The run a folder of `nova run` holds, and the URL of its SQLite storage."""
    run_json, db = folder / "run.json", folder / "optuna.db"
    if not run_json.is_file() or not db.is_file():
        raise SpecError(f"--warm-start-from {folder}: not the output folder of a finished `nova run` "
                        f"(it needs run.json and optuna.db); pass e.g. runs/<old run name>")
    return ResolvedRun.from_json(run_json.read_text()), f"sqlite:///{db.resolve()}"


def seed(run: ResolvedRun, study: optuna.Study, symbol: str, source: optuna.storages.BaseStorage,
         source_run: ResolvedRun) -> WarmStartPlan:
    """Enqueue the previous run's best trials of `symbol` into `study`, once (the study records it)."""
    if WARM_START_ATTR in study.user_attrs:
        return WarmStartPlan()
    name = source_study_name(source_run.namespace, source_run.name, symbol)
    try:
        old = optuna.load_study(study_name=name, storage=source)
    except KeyError:
        seeds = WarmStartPlan(notes=[f"no study '{name}' in the previous run: nothing to warm-start from"])
    else:
        maximize = old.direction == optuna.study.StudyDirection.MAXIMIZE
        seeds = plan(old.get_trials(deepcopy=False), maximize, run.spec.tuning.search_space,
                     run.spec.tuning.warm_start.top_k, run.spec.tuning.trials)
    for params in seeds.seeds:
        study.enqueue_trial(params, skip_if_exists=True)
    study.set_user_attr(WARM_START_ATTR, seeds.record(name))
    log.warning("%s: %s", study.study_name, seeds.summary(name))
    return seeds
