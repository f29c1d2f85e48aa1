"""The TrainingRun spec, defined once.

These typed models are the single definition of a run: the CRD's OpenAPI schema in `crds/` is
generated from them (`nova.crd`), the operator resolves defaults through them, and the trainer reads
the resolved `run.json` through them. Cross-field rules are written twice on purpose, once as a
Python validator (for `nova run` and the trainer) and once as the CEL rule the API server enforces
(`x-kubernetes-validations`); `tests/unit/test_spec.py` checks both refuse the same inputs.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

API_GROUP = "nova.dev"
API_VERSION = "v1alpha1"
KIND = "TrainingRun"
PLURAL = "trainingruns"

SYMBOL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._^=-]{0,31}$"
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|K|M|G|T)?$"
XGB_PARAM_NAME = r"^[a-z][a-z0-9_]{0,63}$"  # XGBoost's parameter names: snake_case


def _cel(*rules: tuple[str, str]) -> dict[str, Any]:
    """CEL rules for the API server, as (rule, message) pairs."""
    return {"x-kubernetes-validations": [{"rule": r, "message": m} for r, m in rules]}


class SpecModel(BaseModel):
    """camelCase on the wire (Kubernetes style), snake_case in Python; unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=False, strict=True
    )


CLAIM_RULE = ("!has(self.claimName) || (self.source == 'file' && has(self.uri) && !self.uri.contains('://') "
              "&& !self.uri.startsWith('/'))",
              "data.claimName needs data.source 'file' and a uri relative to the volume (no scheme, no leading /)")


def check_claim(data: Any) -> None:
    """The Python twin of CLAIM_RULE (for DataSpec and the schedule's RollingDataSpec)."""
    uri = data.uri or ""
    if data.claim_name and (data.source != "file" or "://" in uri or uri.startswith("/")):
        raise ValueError(CLAIM_RULE[1])


class ObjectStoreSpec(SpecModel):
    """How to reach an object store named by an `s3://` (or `gs://`, `az://`) URI. No credentials
    here: they come from `credentialsSecret` in a cluster, from the environment locally."""

    endpoint: str | None = Field(None, max_length=512, pattern=r"^https?://[^\s/@]+(/.*)?$",
                                 description="S3-compatible endpoint URL (http://minio.storage:9000); "
                                 "default: AWS's endpoint for the region")
    region: str | None = Field(None, max_length=64, pattern=r"^[a-z0-9-]+$",
                               description="Region (default: the environment's, else us-east-1)")
    path_style: bool = Field(True, description="Path-style addressing (http://endpoint/bucket/key), what "
                             "most S3-compatible servers want; false: virtual-hosted (bucket.endpoint)")
    credentials_secret: str | None = Field(
        None, pattern=DNS_LABEL_PATTERN, max_length=253, description="Secret of the run's namespace with the "
        "keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and optional AWS_SESSION_TOKEN), given to the "
        "pods as environment variables; never copied into status, Events, ConfigMaps or model cards")


class DataSpec(SpecModel):
    """Where the bars come from and which ones."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            ("!has(self.start) || !has(self.end) || self.start < self.end",
             "data.start must be before data.end"),
            ("self.source != 'file' || has(self.uri)",
             "data.uri is required when data.source is 'file' (a folder, file or glob)"),
            ("self.source != 'postgres' || has(self.table) || has(self.query)",
             "data.table or data.query is required when data.source is 'postgres'"),
            CLAIM_RULE,
        )
    )

    source: Literal["bundled", "synthetic", "file", "postgres"] = Field(
        "bundled", description="bundled: real daily OHLCV shipped in PyPI packages; synthetic: seeded "
        "random market; file: CSV/Parquet; postgres: a table or query")
    symbols: list[Annotated[str, Field(pattern=SYMBOL_PATTERN, max_length=32)]] = Field(
        ..., min_length=1, max_length=500, description="Symbols, trained in this order")
    start: dt.date | None = Field(None, strict=False, description="First day (inclusive)")
    end: dt.date | None = Field(None, strict=False, description="Last day (inclusive)")
    interval: Literal["1d", "1h", "15m", "5m", "1m"] = Field("1d", description="Bar interval")
    uri: str | None = Field(None, max_length=1024, description="file: a folder of <symbol>.csv|.parquet, "
                            "one long table with a 'symbol' column, or a glob; a path, or an object-store "
                            "URI (s3://bucket/prefix, see objectStore); with claimName, a path inside that "
                            "volume")
    claim_name: str | None = Field(None, pattern=DNS_LABEL_PATTERN, max_length=253,
                                   description="file: a PersistentVolumeClaim of the run's namespace, mounted "
                                   "read-only in the pods; uri is then relative to it")
    object_store: ObjectStoreSpec = Field(default_factory=ObjectStoreSpec,
                                          description="Endpoint, region and credentials of an s3:// uri")
    table: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_.]{0,127}$",
                              description="postgres: table with symbol, timestamp, open, high, low, close, volume")
    query: str | None = Field(None, max_length=4096, description="postgres: a query with a %(symbol)s parameter")
    secret_ref: SecretRef | None = Field(None, description="postgres: Secret holding the database URL")
    bars: int = Field(2520, ge=300, le=5_000_000, description="synthetic: bars per symbol")
    timezone: str | None = Field(
        None, max_length=64, pattern=r"^[A-Za-z0-9_+/-]+$",
        description="The exchange's IANA zone (e.g. Asia/Tokyo) for calendar features of intraday bars; "
        "daily bars are dated by their local date whatever the zone")
    date_format: str | None = Field(
        None, max_length=64, description="strftime format of the time column (e.g. %d/%m/%Y); "
        "default: inferred once for the whole column, an ambiguous column is refused")
    adjust: Literal["auto", "none", "adjClose"] = Field(
        "auto", description="auto: adjust OHLC by adj_close/close when an Adj Close column is present; "
        "adjClose: require it; none: use the prices as they are")
    columns: Literal["ohlcv", "close"] = Field(
        "ohlcv", description="close: a close-only series (an index or a FRED series); only the "
        "close-based features are built")
    seed: int = Field(7, ge=0, description="synthetic: random seed")
    reserve_last_bars: int = Field(0, ge=0, le=1_000_000, description="Newest bars no step of this run sees "
                                   "(tuning, holdout, refit); a TrainingSchedule sets promotion.gap + "
                                   "promotion.window, the bars it judges its models on")

    @model_validator(mode="after")
    def _check(self) -> DataSpec:
        if self.start and self.end and self.start >= self.end:
            raise ValueError("data.start must be before data.end")
        check_data_source(self)
        return self


def check_data_source(data: DataSpec) -> None:
    """The fields each source needs, for a run's data and a schedule's rolling data alike."""
    if data.source == "file" and not data.uri:
        raise ValueError("data.uri is required when data.source is 'file' (a folder, file or glob)")
    if data.source == "postgres" and not (data.table or data.query):
        raise ValueError("data.table or data.query is required when data.source is 'postgres'")
    check_claim(data)
    if len(set(data.symbols)) != len(data.symbols):
        raise ValueError("data.symbols has duplicates")


class SecretRef(SpecModel):
    """A key in a Secret of the run's own namespace (no namespace field: by design)."""

    name: str = Field(..., pattern=DNS_LABEL_PATTERN, max_length=253, description="Secret name, in the run's namespace")
    key: str = Field("url", pattern=r"^[-._a-zA-Z0-9]+$", max_length=253, description="Key within the Secret")


class FeaturesSpec(SpecModel):
    """The technical-indicator features computed from each symbol's bars."""

    set: Literal["default", "minimal"] = Field("default", description="Feature set")
    select_top_n: int | None = Field(None, ge=1, le=1000, description="Keep the N features with the "
                                     "highest gain, ranked on each fold's training window only")


class TargetSpec(SpecModel):
    """What the model predicts."""

    kind: Literal["direction", "return"] = Field("direction", description="direction: 1 if the close "
                                                 "rises over the horizon; return: the log return")
    horizon: int = Field(1, ge=1, le=250, description="Bars ahead")


class WalkForwardSpec(SpecModel):
    """Walk-forward cross-validation: each fold trains on the past and tests on the bars after it."""

    model_config = ConfigDict(json_schema_extra=_cel(
        ("!has(self.maxTrainSize) || self.maxTrainSize >= self.minTrainSize",
         "validation.walkForward.maxTrainSize must be >= minTrainSize")))

    folds: int = Field(5, ge=1, le=50, description="Test windows, the last ones of the data, one after another")
    test_size: int = Field(60, ge=5, le=1_000_000, description="Bars in each test window")
    gap: int = Field(5, ge=0, le=10_000, description="Bars dropped between train and test; >= target.horizon")
    min_train_size: int = Field(250, ge=20, le=10_000_000, description="Fewest bars in the first training window")
    max_train_size: int | None = Field(
        None, ge=20, le=100_000_000, description="Most bars in a training window, the most recent ones "
        "(features still use the whole history); default: all")
    expanding: bool = Field(True, description="Expanding (true) or rolling (false) training window")

    @model_validator(mode="after")
    def _check(self) -> WalkForwardSpec:
        if self.max_train_size is not None and self.max_train_size < self.min_train_size:
            raise ValueError("validation.walkForward.maxTrainSize must be >= minTrainSize")
        return self


class HoldoutSpec(SpecModel):
    """Bars at the end of the window that no trial, selection or feature ranking sees."""

    enabled: bool = Field(True, description="Keep a final holdout, scored once for the selected trial")
    fraction: float = Field(0.1, gt=0.0, le=0.5, description="Share of the bars held out; at least "
                            "one walk-forward test window, after a gap of validation.walkForward.gap")


class ValidationSpec(SpecModel):
    """How every trial is scored out of sample."""

    walk_forward: WalkForwardSpec = Field(default_factory=WalkForwardSpec)
    holdout: HoldoutSpec = Field(default_factory=HoldoutSpec)


class EvaluationSpec(SpecModel):
    """How the tuned strategy is judged after tuning."""

    model_config = ConfigDict(json_schema_extra=_cel(
        ("self.pboPartitions % 2 == 0", "evaluation.pboPartitions must be even")))

    cost_bps: float = Field(1.0, ge=0.0, le=10_000.0, description="Trading cost in basis points per "
                            "unit of turnover; net Sharpe, DSR and PBO use returns net of it")
    pbo_partitions: int = Field(16, ge=2, le=24, description="S, the blocks of the Probability of "
                                "Backtest Overfitting's combinatorially symmetric cross-validation")

    @model_validator(mode="after")
    def _check(self) -> EvaluationSpec:
        if self.pbo_partitions % 2:
            raise ValueError("evaluation.pboPartitions must be even")
        return self


class ModelSpec(SpecModel):
    """How XGBoost trains (the parameters that are not tuned)."""

    device: Literal["auto", "cuda", "cpu"] = Field("auto", description="auto picks CUDA when a GPU is present")
    quantile_d_matrix: bool = Field(True, alias="quantileDMatrix",
                                    description="QuantileDMatrix (less memory); DMatrix otherwise")
    gradient_sampling: bool = Field(False, description="sampling_method=gradient_based where XGBoost accepts it")
    num_boost_round: int = Field(300, ge=1, le=100_000, description="Most boosting rounds per fold")
    early_stopping_rounds: int | None = Field(30, ge=1, le=10_000, description="Stop a fold after this many rounds "
                                              "without improvement on its test window")
    max_bin: int = Field(256, ge=2, le=4096, description="Histogram bins per feature (XGBoost max_bin)")
    nthread: int | None = Field(None, ge=1, le=1024, description="CPU threads; default all")
    params: dict[Annotated[str, Field(pattern=XGB_PARAM_NAME)],
                 float | int | Annotated[str, Field(max_length=256)] | bool] = Field(
        default_factory=dict, max_length=64,
        description="Fixed XGBoost parameters, by XGBoost's own names (max_depth, tree_method, ...): at most "
        "64, each a number, a boolean or a string of at most 256 characters; tuned ones override")


ParamType = Literal["int", "float", "categorical"]


class ParamSpace(SpecModel):
    """One tuned parameter: a range (int, float) or a list of choices (categorical)."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            ("self.type == 'categorical' || (has(self.low) && has(self.high) && self.low < self.high)",
             "int and float parameters need low < high"),
            ("self.type != 'categorical' || (has(self.choices) && size(self.choices) > 0)",
             "categorical parameters need a non-empty choices list"),
            ("!has(self.log) || !self.log || (has(self.low) && self.low > 0.0)",
             "log scale needs low > 0"),
        )
    )

    type: ParamType = Field(..., description="int, float or categorical")
    low: float | None = Field(None, description="Lowest value (int, float)")
    high: float | None = Field(None, description="Highest value (int, float)")
    log: bool = Field(False, description="Sample on a log scale (needs low > 0)")
    step: float | None = Field(None, gt=0, description="Spacing of the values sampled (ignored with log)")
    choices: list[Annotated[str, Field(max_length=256)] | int | float | bool] | None = Field(
        None, max_length=100, description="The values a categorical parameter may take")

    @model_validator(mode="after")
    def _check(self) -> ParamSpace:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("categorical parameters need a non-empty choices list")
        else:
            if self.low is None or self.high is None or not self.low < self.high:
                raise ValueError(f"{self.type} parameters need low < high (got low={self.low}, high={self.high})")
            if self.log and self.low <= 0:
                raise ValueError(f"log scale needs low > 0 (got low={self.low})")
        return self


XGB_TUNABLE = {
    "eta", "learning_rate", "max_depth", "min_child_weight", "subsample", "colsample_bytree",
    "colsample_bylevel", "colsample_bynode", "gamma", "lambda", "reg_lambda", "alpha", "reg_alpha",
    "max_bin", "max_leaves", "grow_policy", "max_delta_step", "scale_pos_weight", "num_parallel_tree",
}


def default_search_space() -> dict[str, ParamSpace]:
    return {
        "eta": ParamSpace(type="float", low=0.01, high=0.3, log=True),
        "max_depth": ParamSpace(type="int", low=2, high=8),
        "min_child_weight": ParamSpace(type="float", low=1.0, high=20.0, log=True),
        "subsample": ParamSpace(type="float", low=0.5, high=1.0),
        "colsample_bytree": ParamSpace(type="float", low=0.4, high=1.0),
        "lambda": ParamSpace(type="float", low=1e-3, high=10.0, log=True),
    }


class SamplerSpec(SpecModel):
    """Optuna's sampler: how the next trial's parameters are chosen."""

    type: Literal["tpe", "cmaes", "random"] = Field("tpe", description="tpe, cmaes or random")
    seed: int | None = Field(42, ge=0, description="Seed, so a run alone is reproducible")


class PrunerSpec(SpecModel):
    """Optuna's pruner: poor trials stop early, judged at every boosting round."""

    type: Literal["median", "hyperband", "none"] = Field("median", description="median, hyperband or none")
    warmup_steps: int = Field(10, ge=0, description="Boosting rounds before a trial may be pruned")
    startup_trials: int = Field(5, ge=0, description="Trials that are never pruned")


class StorageSpec(SpecModel):
    """Optuna storage. Only ever a Secret reference in a cluster; never a password in the spec."""

    secret_ref: SecretRef | None = Field(None, description="Secret key holding a SQLAlchemy URL "
                                         "(postgresql+psycopg://...)")
    keep_studies: bool = Field(True, description="Keep the studies when the run is deleted")


class WarmStartSpec(SpecModel):
    """How many of the previous run's trials seed each new study."""

    top_k: int = Field(10, ge=1, le=1000, description="The previous run's best COMPLETE trials of each symbol "
                       "enqueued as fixed trials before the sampler's own (never more than tuning.trials)")


Metric = Literal["auc", "logloss", "accuracy", "sharpe", "rmse"]
METRIC_DIRECTION: dict[str, Literal["maximize", "minimize"]] = {
    "auc": "maximize", "logloss": "minimize", "accuracy": "maximize", "sharpe": "maximize", "rmse": "minimize",
}


class TuningSpec(SpecModel):
    """The Optuna study of each symbol: budget, workers, metric, search space, storage."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            ("self.workers <= self.trials", "tuning.workers must not exceed tuning.trials"),
            ("self.graceSeconds > self.heartbeatSeconds",
             "tuning.graceSeconds must be greater than tuning.heartbeatSeconds"),
        )
    )

    trials: int = Field(50, ge=1, le=100_000, description="Trial budget per symbol, across all workers")
    workers: int = Field(1, ge=1, le=1000, description="Worker pods (or local processes)")
    metric: Metric = Field("auc", description="What a trial is scored by: auc, logloss, accuracy, sharpe, rmse")
    selection: Literal["best", "deflated"] = Field(
        "best", description="Trial to refit: best (by the metric) or deflated (the highest Deflated "
        "Sharpe Ratio of the net out-of-sample returns, so a large study does not pick a lucky outlier)")
    direction: Literal["maximize", "minimize"] | None = Field(None, description="Defaults from the metric")
    sampler: SamplerSpec = Field(default_factory=SamplerSpec)
    pruner: PrunerSpec = Field(default_factory=PrunerSpec)
    search_space: dict[Annotated[str, Field(pattern=r"^[a-z_]{1,40}$")], ParamSpace] = Field(
        default_factory=default_search_space, max_length=30,
        description="Tuned XGBoost parameters by name (eta, max_depth, ...); default: six common ones",
        json_schema_extra=lambda s: s.update(_cel(
            (f"self.all(k, k in {sorted(XGB_TUNABLE)})",
             f"tuning.searchSpace: unknown XGBoost parameter; tunable: {', '.join(sorted(XGB_TUNABLE))}"))))
    storage: StorageSpec = Field(default_factory=StorageSpec)
    timeout_seconds: int | None = Field(None, ge=1, description="Seconds after which workers start no new trial")
    heartbeat_seconds: int = Field(10, ge=1, le=3600, description="Seconds between a running trial's heartbeats")
    grace_seconds: int = Field(30, ge=2, le=36_000, description="Seconds without a heartbeat after which a trial "
                               "is failed and retried once")
    warm_start_from: str | None = Field(None, pattern=DNS_LABEL_PATTERN, max_length=63, description="A previous "
                                        "TrainingRun of this namespace whose best trials seed this run's studies "
                                        "(study <namespace>.<run>.<symbol> in the same storage); parameters "
                                        "outside this search space are clipped or dropped, with a note")
    warm_start: WarmStartSpec = Field(default_factory=WarmStartSpec)

    @field_validator("search_space")
    @classmethod
    def _known_params(cls, space: dict[str, ParamSpace]) -> dict[str, ParamSpace]:
        unknown = sorted(set(space) - XGB_TUNABLE)
        if unknown:
            raise ValueError(f"unknown XGBoost parameter(s) {unknown}; tunable: {sorted(XGB_TUNABLE)}")
        return space

    @model_validator(mode="after")
    def _check(self) -> TuningSpec:
        if self.workers > self.trials:
            raise ValueError("tuning.workers must not exceed tuning.trials")
        if self.grace_seconds <= self.heartbeat_seconds:
            raise ValueError("tuning.graceSeconds must be greater than tuning.heartbeatSeconds")
        return self

    @property
    def resolved_direction(self) -> Literal["maximize", "minimize"]:
        return self.direction or METRIC_DIRECTION[self.metric]


# a GPU memory pool size must say its unit: "8" once gave an 8-byte pool
POOL_SIZE_PATTERN = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|K|M|G|T)$"


class RmmSpec(SpecModel):
    """The RMM memory pool of the trainer on the GPU."""

    enabled: bool = Field(True, description="Give the trainer an RMM memory pool on the GPU")
    initial_pool_size: str = Field("8Gi", pattern=POOL_SIZE_PATTERN, description="GPU memory reserved at start, "
                                   "a Kubernetes quantity with its unit (e.g. 8Gi, 512Mi): a bare number is refused")
    maximum_pool_size: str = Field("14Gi", pattern=POOL_SIZE_PATTERN, description="Most GPU memory the pool may "
                                   "grow to, with its unit (e.g. 14Gi)")


class GpuSpec(SpecModel):
    """GPUs of each worker pod."""

    count: int = Field(1, ge=0, le=16, description="GPUs per worker; 0 for a CPU-only run")
    resource_name: str = Field("nvidia.com/gpu", pattern=r"^[a-z0-9.-]+/[a-z0-9.-]+$",
                               description="Extended resource the pods ask for (the device plugin's name)")
    rmm: RmmSpec = Field(default_factory=RmmSpec)


class SchedulingSpec(SpecModel):
    """Where the worker and refit pods may run (copied into their pod spec)."""

    node_selector: dict[str, str] = Field(default_factory=dict, description="Node labels the pods require")
    tolerations: list[dict[str, Any]] = Field(default_factory=list, description="Pod tolerations (core/v1)",
                                              json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})
    affinity: dict[str, Any] = Field(default_factory=dict, description="Pod affinity (core/v1)",
                                     json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})
    priority_class_name: str | None = Field(None, pattern=DNS_LABEL_PATTERN, description="PriorityClass of the pods "
                                            "(also the Kueue priority of a queued run, unless "
                                            "workloadPriorityClassName is set)")
    workload_priority_class_name: str | None = Field(None, pattern=DNS_LABEL_PATTERN, max_length=63,
                                                     description="Kueue WorkloadPriorityClass of a queued run's Jobs "
                                                     "(label kueue.x-k8s.io/priority-class): orders and preempts in "
                                                     "Kueue without changing the pods' own priority")
    service_account_name: str | None = Field(None, pattern=DNS_LABEL_PATTERN,
                                             description="ServiceAccount of the pods; default: the namespace's")


class ContainerResources(SpecModel):
    """A container's requests and limits, as Kubernetes quantities (cpu: "2" or "500m", memory: "8Gi")."""

    requests: dict[str, Annotated[str, Field(pattern=QUANTITY_PATTERN.replace("$", "m?$"))]] = Field(
        default_factory=dict, description="What the scheduler reserves (cpu, memory)")
    limits: dict[str, Annotated[str, Field(pattern=QUANTITY_PATTERN.replace("$", "m?$"))]] = Field(
        default_factory=dict, description="The most the container may use")


class ResourcesSpec(SpecModel):
    """CPU and memory of the worker pods' two containers."""

    trainer: ContainerResources = Field(default_factory=lambda: ContainerResources(
        requests={"cpu": "2", "memory": "8Gi"}, limits={"memory": "16Gi"}), description="The trainer container")
    prep: ContainerResources = Field(default_factory=lambda: ContainerResources(
        requests={"cpu": "1", "memory": "2Gi"}, limits={"memory": "4Gi"}), description="The prep sidecar")


class PrepSpec(SpecModel):
    """The prep sidecar, which builds each symbol's features ahead of the trainer."""

    max_ahead: int = Field(2, ge=1, le=100, description="Symbols prepared ahead of the trainer")
    delete_after_use: bool = Field(True, description="Delete a symbol's shard once it is tuned")
    wait_timeout_seconds: int = Field(1800, ge=1, description="Seconds the trainer waits for a symbol's shard")


class OutputSpec(SpecModel):
    """Where the refit writes the models."""

    uri: str | None = Field(None, max_length=1024, description="Folder for models, model cards and serving "
                            "files; defaults to runs/<name> locally and /output in a cluster. An object-store "
                            "URI (s3://bucket/prefix) gets a run-scoped prefix: <uri>/<namespace>/<run>/<symbol>/")
    object_store: ObjectStoreSpec = Field(default_factory=ObjectStoreSpec,
                                          description="Endpoint, region and credentials of an s3:// uri")


class TrainingRunSpec(SpecModel):
    """What a user writes under `spec:`."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            ("self.validation.walkForward.gap >= self.target.horizon",
             "validation.walkForward.gap must be >= target.horizon, or labels leak into the test window"),
            ("self.target.kind != 'return' || !(self.tuning.metric in ['auc', 'logloss'])",
             "tuning.metric auc/logloss needs target.kind 'direction'; use rmse or sharpe for 'return'"),
            ("self.target.kind != 'direction' || self.tuning.metric != 'rmse'",
             "tuning.metric 'rmse' needs target.kind 'return'"),
        )
    )

    data: DataSpec
    features: FeaturesSpec = Field(default_factory=FeaturesSpec)
    target: TargetSpec = Field(default_factory=TargetSpec)
    validation: ValidationSpec = Field(default_factory=ValidationSpec)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    model: ModelSpec = Field(default_factory=ModelSpec)
    tuning: TuningSpec = Field(default_factory=TuningSpec)
    gpu: GpuSpec = Field(default_factory=GpuSpec)
    scheduling: SchedulingSpec = Field(default_factory=SchedulingSpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    prep: PrepSpec = Field(default_factory=PrepSpec)
    output: OutputSpec = Field(default_factory=OutputSpec)
    image: str | None = Field(None, max_length=512, description="Trainer image; the operator's default otherwise")
    suspend: bool = Field(False, description="Stop every worker pod; finished trials are kept and tuning resumes "
                          "where it was when set back to false (with a queue: when Kueue admits it again)")
    queue_name: str | None = Field(None, pattern=DNS_LABEL_PATTERN, max_length=63, description="Kueue LocalQueue "
                                   "of this namespace the worker and refit Jobs wait in (label "
                                   "kueue.x-k8s.io/queue-name); they start only when Kueue admits them, and the "
                                   "run shows phase Queued with Kueue's reason until then. Default: the operator's "
                                   "default queue (the chart's kueue.defaultQueue), if any")
    ttl_seconds_after_finished: int | None = Field(None, ge=0, description="Seconds after the run Succeeded or "
                                                   "Failed (status.completionTime) when it is deleted")
    progress_deadline_seconds: int = Field(600, ge=30, le=7 * 86400, description="Seconds a Preparing or Running "
                                           "run may go without progress (a pod Ready, a trial started or finished) "
                                           "before its Progressing condition turns False saying what to look at")

    @model_validator(mode="after")
    def _check(self) -> TrainingRunSpec:
        if self.validation.walk_forward.gap < self.target.horizon:
            raise ValueError("validation.walkForward.gap must be >= target.horizon, "
                             "or labels leak into the test window")
        if self.target.kind == "return" and self.tuning.metric in {"auc", "logloss"}:
            raise ValueError(f"tuning.metric '{self.tuning.metric}' needs target.kind 'direction'; "
                             "use rmse or sharpe for 'return'")
        if self.target.kind == "direction" and self.tuning.metric == "rmse":
            raise ValueError("tuning.metric 'rmse' needs target.kind 'return'")
        return self


class Metadata(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(..., pattern=DNS_LABEL_PATTERN, max_length=50,
                      description="At most 50 characters: child objects add suffixes such as -workers")
    namespace: str = Field("default", pattern=DNS_LABEL_PATTERN, max_length=63)
    generation: int = 1


class TrainingRun(BaseModel):
    """A whole manifest, as `kubectl apply` and `nova run` read it."""

    model_config = ConfigDict(extra="allow")
    api_version: str = Field(f"{API_GROUP}/{API_VERSION}", alias="apiVersion")
    kind: Literal["TrainingRun"] = "TrainingRun"
    metadata: Metadata
    spec: TrainingRunSpec

    @field_validator("api_version")
    @classmethod
    def _api_version(cls, value: str) -> str:
        if value != f"{API_GROUP}/{API_VERSION}":
            raise ValueError(f"apiVersion must be {API_GROUP}/{API_VERSION}")
        return value


class ResolvedRun(SpecModel):
    """The run.json that the operator writes and the trainer reads: the spec with every default
    filled in, plus the identity of the run. Never holds a secret."""

    name: str
    namespace: str = "default"
    generation: int = 1
    spec: TrainingRunSpec

    def study_name(self, symbol: str) -> str:
        return f"{self.namespace}.{self.name}.{symbol}"

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, indent=2)

    @classmethod
    def from_json(cls, text: str) -> ResolvedRun:
        return cls.model_validate_json(text)


def resolve(run: TrainingRun) -> ResolvedRun:
    return ResolvedRun(name=run.metadata.name, namespace=run.metadata.namespace,
                       generation=run.metadata.generation, spec=run.spec)


_UNION_TAGS = {"float": "a number", "int": "an integer", "str": "a string", "constrained-str": "a string",
               "bool": "a boolean", "list": "a list", "dict": "a map", "none": "null"}


def _union_tag(part: Any) -> str | None:
    """What a union member's tag in an error location means ('float' -> 'a number'), else None."""
    if not isinstance(part, str):
        return None
    if part in _UNION_TAGS:
        return _UNION_TAGS[part]
    return part if re.match(r"^[a-z-]+\[.*\]$", part) else None


def format_validation_error(exc: Exception, prefix: str = "") -> str:
    """One line per mistake, naming the field by the key the user wrote (map keys such as
    model.params.max_depth stay as written). A value that fits no member of a union gets one line
    listing what it may be, not one line per member."""
    from pydantic import ValidationError

    if not isinstance(exc, ValidationError):
        return str(exc)
    lines: list[str] = []
    unions: dict[tuple[Any, ...], tuple[int, list[str], Any]] = {}
    for err in exc.errors():
        loc = tuple(err["loc"])
        tag = _union_tag(loc[-1]) if loc else None
        if tag is not None:
            key = loc[:-1]
            if key not in unions:
                unions[key] = (len(lines), [], err.get("input"))
                lines.append("")
            unions[key][1].append(tag)
            continue
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            from nova.suggest import hint

            msg = "unknown field" + hint(globals().get(exc.title), loc)
        lines.append(_line(prefix, loc, msg))
    for key, (index, kinds, value) in unions.items():
        wanted = ", ".join(dict.fromkeys(kinds))
        lines[index] = _line(prefix, key, f"must be {wanted} (got {type(value).__name__}: {str(value)[:60]})")
    return "\n".join(lines)


def _line(prefix: str, loc: tuple[Any, ...], message: str) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    where = f"{prefix}{path}" if path else prefix.rstrip(".") or "spec"
    return f"{where}: {message}"


DataSpec.model_rebuild()
OutputSpec.model_rebuild()
