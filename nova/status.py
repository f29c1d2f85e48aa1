"""What the operator writes under a TrainingRun's `status:`, defined once.

The CRD's status schema is generated from these models (`nova.crd`), and the operator builds its
status patches through them, so a field the operator writes can never be pruned by the API server
for being missing from the schema."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

Phase = Literal["Pending", "Preparing", "Running", "Refitting", "Succeeded", "Failed", "Suspended"]


class StatusModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Condition(StatusModel):
    """A condition in the Kubernetes convention (metav1.Condition)."""

    type: str = Field(..., max_length=316, description="Ready, Tuning, Refitted, Suspended, Failed")
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(..., max_length=1024, description="CamelCase, machine-readable")
    message: str = Field("", max_length=32768, description="What happened and, on failure, what to fix")
    last_transition_time: str = Field(..., description="RFC 3339 time of the last status change")
    observed_generation: int | None = Field(None, ge=0)


class WorkerStatus(StatusModel):
    """Counts of the worker Job's pods."""

    desired: int = Field(0, ge=0)
    active: int = Field(0, ge=0)
    ready: int = Field(0, ge=0)
    succeeded: int = Field(0, ge=0)
    failed: int = Field(0, ge=0)


class StudyStatus(StatusModel):
    """One symbol's Optuna study, as read from the storage."""

    symbol: str
    study: str
    budget: int = Field(0, ge=0)
    complete: int = Field(0, ge=0)
    pruned: int = Field(0, ge=0)
    failed: int = Field(0, ge=0)
    running: int = Field(0, ge=0)
    best_value: float | None = None
    best_params: dict[str, float | int | str | bool] = Field(default_factory=dict)


class SymbolModel(StatusModel):
    """One symbol's refitted model."""

    symbol: str
    file: str | None = Field(None, description="Model file, relative to model.uri")
    best_value: float | None = None
    metrics: dict[str, float] = Field(default_factory=dict, description="Walk-forward metrics of the refit")
    error: str | None = Field(None, description="Why this symbol was not refitted")


class ModelStatus(StatusModel):
    """Where the refit wrote the models, and how good they are."""

    uri: str
    symbols: list[SymbolModel] = Field(default_factory=list)


class RunStatus(StatusModel):
    phase: Phase = "Pending"
    message: str | None = Field(None, description="One line: what the run is doing or why it stopped")
    observed_generation: int | None = Field(None, ge=0)
    conditions: list[Condition] = Field(default_factory=list)
    symbols: int | None = Field(None, ge=0, description="Number of symbols (for the printer column)")
    trials: str | None = Field(None, description="Finished trials / total budget, over every symbol")
    best_value: float | None = Field(None, description="Best value over every symbol's study")
    best_symbol: str | None = None
    workers: WorkerStatus | None = None
    studies: list[StudyStatus] = Field(default_factory=list)
    model: ModelStatus | None = None
    start_time: str | None = None
    completion_time: str | None = None
