"""What the operator writes under a TrainingRun's `status:`, defined once.

The CRD's status schema is generated from these models (`nova.crd`), and the operator builds its
status patches through them, so a field the operator writes can never be pruned by the API server
for being missing from the schema."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

Phase = Literal["Pending", "Queued", "Preparing", "Running", "Refitting", "Succeeded", "Failed", "Suspended"]


class StatusModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Condition(StatusModel):
    """A condition in the Kubernetes convention (metav1.Condition)."""

    type: str = Field(..., max_length=316, description="Ready, Tuning, Refitted, Suspended, Failed")
    status: Literal["True", "False", "Unknown"] = Field(..., description="True, False or Unknown")
    reason: str = Field(..., max_length=1024, description="CamelCase, machine-readable")
    message: str = Field("", max_length=32768, description="What happened and, on failure, what to fix")
    last_transition_time: str = Field(..., description="RFC 3339 time of the last status change")
    observed_generation: int | None = Field(None, ge=0, description="metadata.generation this condition was set for")


class WorkerStatus(StatusModel):
    """Counts of the worker Job's pods."""

    desired: int = Field(0, ge=0, description="Worker pods asked for (spec.tuning.workers)")
    active: int = Field(0, ge=0, description="Worker pods running")
    ready: int = Field(0, ge=0, description="Worker pods Ready")
    succeeded: int = Field(0, ge=0, description="Worker pods that finished their share")
    failed: int = Field(0, ge=0, description="Worker pod failures so far (the Job retries them)")


class BestParam(StatusModel):
    """One parameter of a study's best trial. A list of name/value pairs rather than a map, so that
    `kubectl describe` shows the names as written (it capitalises map keys: eta became Eta)."""

    name: str = Field(..., description="XGBoost parameter name, as in spec.tuning.searchSpace")
    value: str = Field(..., max_length=256, description="Its value, as JSON (0.05, 4, \"lossguide\", true)")


class StudyStatus(StatusModel):
    """One symbol's Optuna study, as read from the storage."""

    symbol: str = Field(..., description="The symbol this study tunes")
    study: str = Field(..., description="Optuna study name in the storage: <namespace>.<run>.<symbol>")
    budget: int = Field(0, ge=0, description="Trials this study runs, across all workers")
    complete: int = Field(0, ge=0, description="Trials that finished with a value")
    pruned: int = Field(0, ge=0, description="Trials the pruner stopped early")
    failed: int = Field(0, ge=0, description="Failed trials that count (not replaced by a retry)")
    running: int = Field(0, ge=0, description="Trials running now")
    best_value: float | None = Field(None, description="Best value of spec.tuning.metric so far")
    best_params: list[BestParam] = Field(default_factory=list, description="Parameters of the best trial")


class SymbolEvaluation(StatusModel):
    """How far the selected trial can be trusted (computed by the refit from every trial's
    out-of-sample returns, net of evaluation.costBps). Sharpe ratios are annualised."""

    selection: str | None = Field(None, description="tuning.selection: best or deflated")
    trial: int | None = Field(None, description="The trial refitted")
    trials: int | None = Field(None, ge=0, description="Trials counted by the DSR (complete and pruned)")
    sharpe_gross: float | None = Field(None, description="Out-of-sample Sharpe before costs, all folds")
    sharpe_net: float | None = Field(None, description="The same after costs")
    dsr: float | None = Field(None, description="Deflated Sharpe Ratio: P(true Sharpe > 0) given the trials")
    expected_max_sharpe: float | None = Field(None, description="Expected best Sharpe of as many trials of pure noise")
    pbo: float | None = Field(None, description="Probability of Backtest Overfitting (CSCV)")
    holdout_sharpe_net: float | None = Field(None, description="Net Sharpe on the untouched holdout, scored once")
    buy_hold_sharpe: float | None = Field(None, description="Buy-and-hold over the same test bars")
    note: str | None = Field(None, max_length=1024, description="e.g. the model is effectively constant")


class SymbolModel(StatusModel):
    """One symbol's refitted model."""

    symbol: str = Field(..., description="The symbol")
    uri: str | None = Field(None, description="The symbol's folder: model.ubj, model.json, card.json, "
                            "model-settings.json (MLServer) and inferenceservice.yaml (KServe)")
    file: str | None = Field(None, description="Model file, relative to model.uri")
    best_value: float | None = Field(None, description="Best value of the tuning metric of its study")
    metrics: dict[str, float] = Field(default_factory=dict, description="Walk-forward metrics of the refit")
    evaluation: SymbolEvaluation | None = Field(None, description="DSR, PBO, net Sharpe, holdout, baseline")
    error: str | None = Field(None, description="Why this symbol was not refitted")


class ModelStatus(StatusModel):
    """Where the refit wrote the models, and how good they are."""

    uri: str = Field(..., description="Folder (or the run's object-store prefix) holding one folder per symbol")
    symbols: list[SymbolModel] = Field(default_factory=list, description="One entry per symbol")


class RunStatus(StatusModel):
    """Written by the operator only."""

    phase: Phase = Field("Pending", description="Pending, Queued (a Kueue queue holds its Job: the Admitted "
                         "condition carries Kueue's reason), Preparing, Running, Refitting, Succeeded, Failed or "
                         "Suspended; the conditions say why")
    message: str | None = Field(None, description="One line: what the run is doing or why it stopped")
    observed_generation: int | None = Field(None, ge=0, description="metadata.generation this status was decided for")
    conditions: list[Condition] = Field(default_factory=list, description="Ready, Reconciling, Stalled, Suspended, "
                                        "TuningComplete, Progressing (kstatus conventions); Admitted for a run "
                                        "with a queue")
    symbols: int | None = Field(None, ge=0, description="Number of symbols (for the printer column)")
    trials: str | None = Field(None, description="Finished trials / total budget, over every symbol")
    best_value: float | None = Field(None, description="Best value over every symbol's study")
    best_symbol: str | None = Field(None, description="The symbol whose study holds bestValue")
    workers: WorkerStatus | None = None
    studies: list[StudyStatus] = Field(default_factory=list, description="One entry per symbol's study")
    model: ModelStatus | None = None
    start_time: str | None = Field(None, description="RFC 3339 time the operator first saw the run")
    last_progress_time: str | None = Field(None, description="RFC 3339 time the run last moved: a phase change, a "
                                           "worker pod Ready, a trial started or finished")
    completion_time: str | None = Field(None, description="RFC 3339 time the run Succeeded or Failed; "
                                        "ttlSecondsAfterFinished counts from it")
