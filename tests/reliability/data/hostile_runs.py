"""Hostile TrainingRuns: one list, checked against the spec models (`nova run`, the trainer) and
against the real API server through the CRD (`kubectl apply`). Each case names the field that the
refusal must name, as a substring of the message in both enforcers (both print
`spec.data.symbols[0]: ...`)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any


def base() -> dict:
    return {"apiVersion": "nova.dev/v1alpha1", "kind": "TrainingRun", "metadata": {"name": "hostile"},
            "spec": {"data": {"symbols": ["AAPL"]}}}


def _merge(into: dict, patch: dict) -> None:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


@dataclass(frozen=True)
class Case:
    id: str
    field: str  # substring the refusal must contain (a YAML path)
    spec: dict = field(default_factory=dict)  # merged into base()["spec"]
    top: dict = field(default_factory=dict)  # merged into the whole manifest
    models_gap: str = ""  # a known gap of the spec models: they accept it (strict xfail)
    api_gap: str = ""  # a known gap of the CRD: the API server accepts it (the test is a strict xfail)

    def manifest(self) -> dict:
        doc = base()
        _merge(doc["spec"], copy.deepcopy(self.spec))
        _merge(doc, copy.deepcopy(self.top))
        return doc


def _space(**params: Any) -> dict:
    return {"tuning": {"searchSpace": params}}


def _deep(depth: int) -> dict:
    node: dict = {"x": 1}
    for _ in range(depth):
        node = {"x": node}
    return node


GIANT = "A" * 100_000

CASES: list[Case] = [
    # --- wrong types ---------------------------------------------------------------------------
    Case("symbols-not-a-list", "data.symbols", {"data": {"symbols": "AAPL"}}),
    Case("symbols-null", "data.symbols", {"data": {"symbols": None}}),
    Case("symbol-is-a-number-list", "data.symbols", {"data": {"symbols": [{"$ne": 1}]}}),
    Case("bars-not-a-number", "data.bars", {"data": {"source": "synthetic", "bars": "many"}}),
    Case("trials-fractional", "tuning.trials", {"tuning": {"trials": 2.5}}),
    Case("trials-a-word", "tuning.trials", {"tuning": {"trials": "lots"}}),
    Case("suspend-not-a-bool", "suspend", {"suspend": 3}),
    Case("start-not-a-date", "data.start", {"data": {"start": "yesterday"}}),
    Case("spec-not-an-object", "spec", top={"spec": "rm -rf /"}),
    Case("model-params-nested", "model.params", {"model": {"params": {"tree_method": _deep(50)}}},
         api_gap="model.params values are x-kubernetes-preserve-unknown-fields in the CRD: the API server "
                 "stores an object there; only the operator's spec models refuse it"),
    Case("search-low-a-word", "tuning.searchSpace", _space(eta={"type": "float", "low": "abc", "high": 0.3})),
    # --- out-of-range numbers ------------------------------------------------------------------
    Case("bars-negative", "data.bars", {"data": {"source": "synthetic", "bars": -1}}),
    Case("bars-huge", "data.bars", {"data": {"source": "synthetic", "bars": 10**12}}),
    Case("trials-zero", "tuning.trials", {"tuning": {"trials": 0}}),
    Case("trials-huge", "tuning.trials", {"tuning": {"trials": 10**9}}),
    Case("workers-zero", "tuning.workers", {"tuning": {"workers": 0}}),
    Case("max-train-below-min", "maxTrainSize",
         {"validation": {"walkForward": {"minTrainSize": 300, "maxTrainSize": 100}}}),
    Case("workers-huge", "tuning.workers", {"tuning": {"workers": 5000, "trials": 10000}}),
    Case("workers-over-trials", "tuning.workers", {"tuning": {"workers": 8, "trials": 4}}),
    Case("heartbeat-zero", "tuning.heartbeatSeconds", {"tuning": {"heartbeatSeconds": 0}}),
    Case("grace-below-heartbeat", "tuning.graceSeconds", {"tuning": {"heartbeatSeconds": 60, "graceSeconds": 30}}),
    Case("timeout-negative", "tuning.timeoutSeconds", {"tuning": {"timeoutSeconds": -5}}),
    Case("num-boost-round-negative", "model.numBoostRound", {"model": {"numBoostRound": -1}}),
    Case("max-bin-one", "model.maxBin", {"model": {"maxBin": 1}}),
    Case("gpu-count-negative", "gpu.count", {"gpu": {"count": -1}}),
    Case("horizon-zero", "target.horizon", {"target": {"horizon": 0}}),
    Case("folds-zero", "validation.walkForward.folds", {"validation": {"walkForward": {"folds": 0}}}),
    Case("gap-below-horizon", "validation.walkForward.gap",
         {"target": {"horizon": 10}, "validation": {"walkForward": {"gap": 2}}}),
    Case("select-top-n-zero", "features.selectTopN", {"features": {"selectTopN": 0}}),
    Case("prep-max-ahead-zero", "prep.maxAhead", {"prep": {"maxAhead": 0}}),
    Case("ttl-negative", "ttlSecondsAfterFinished", {"ttlSecondsAfterFinished": -1}),
    Case("date-range-reversed", "data.start", {"data": {"start": "2012-01-01", "end": "2011-01-01"}}),
    # --- huge lists and giant strings -----------------------------------------------------------
    Case("symbols-10000", "data.symbols", {"data": {"symbols": [f"S{i}" for i in range(10_000)]}}),
    Case("symbols-duplicated", "data.symbols", {"data": {"symbols": ["AAPL", "MSFT", "AAPL"]}}),
    Case("symbols-empty", "data.symbols", {"data": {"symbols": []}}),
    Case("symbol-giant", "data.symbols", {"data": {"symbols": [GIANT]}}),
    Case("symbol-33-chars", "data.symbols", {"data": {"symbols": ["A" * 33]}}),
    Case("uri-giant", "data.uri", {"data": {"source": "file", "uri": "/data/" + GIANT}}),
    Case("query-giant", "data.query", {"data": {"source": "postgres", "query": "SELECT 1 -- " + GIANT}}),
    Case("image-giant", "image", {"image": "registry.example/" + GIANT}),
    Case("output-uri-giant", "output.uri", {"output": {"uri": "/output/" + GIANT}}),
    Case("choices-10000", "tuning.searchSpace",
         _space(max_depth={"type": "categorical", "choices": list(range(10_000))})),
    # --- injection-like names and paths ---------------------------------------------------------
    Case("symbol-path-traversal", "data.symbols", {"data": {"symbols": ["../../etc/passwd"]}}),
    Case("symbol-absolute-path", "data.symbols", {"data": {"symbols": ["/etc/shadow"]}}),
    Case("symbol-command-substitution", "data.symbols", {"data": {"symbols": ["$(rm -rf /)"]}}),
    Case("symbol-backticks", "data.symbols", {"data": {"symbols": ["`id`"]}}),
    Case("symbol-sql", "data.symbols", {"data": {"symbols": ["'; DROP TABLE trials; --"]}}),
    Case("symbol-option-injection", "data.symbols", {"data": {"symbols": ["--config=/etc/passwd"]}}),
    Case("symbol-glob", "data.symbols", {"data": {"symbols": ["*"]}}),
    Case("symbol-dotdot", "data.symbols", {"data": {"symbols": [".."]}}),
    Case("symbol-trailing-newline", "data.symbols", {"data": {"symbols": ["AAPL\n"]}}),
    Case("symbol-nul-byte", "data.symbols", {"data": {"symbols": ["AAPL\u0000x"]}}),
    Case("symbol-cyrillic-homoglyph", "data.symbols", {"data": {"symbols": ["\u0410APL"]}}),
    Case("symbol-zero-width-space", "data.symbols", {"data": {"symbols": ["AA\u200bPL"]}}),
    Case("symbol-rtl-override", "data.symbols", {"data": {"symbols": ["\u202eLPAA"]}}),
    Case("symbol-fullwidth", "data.symbols", {"data": {"symbols": ["\uff21\uff21\uff30\uff2c"]}}),
    Case("table-sql", "data.table", {"data": {"source": "postgres", "table": "bars; DROP TABLE bars"}}),
    Case("table-quoted", "data.table", {"data": {"source": "postgres", "table": 'bars" OR "1"="1'}}),
    Case("gpu-resource-injection", "gpu.resourceName", {"gpu": {"resourceName": "nvidia.com/gpu; rm -rf /"}}),
    Case("rmm-pool-injection", "gpu.rmm.maximumPoolSize", {"gpu": {"rmm": {"maximumPoolSize": "$(id)"}}}),
    Case("resources-cpu-injection", "resources.trainer.requests",
         {"resources": {"trainer": {"requests": {"cpu": "$(whoami)"}}}}),
    Case("service-account-traversal", "scheduling.serviceAccountName",
         {"scheduling": {"serviceAccountName": "../kube-system/default"}}),
    Case("name-path-traversal", "metadata.name", top={"metadata": {"name": "../../etc"}}),
    Case("name-uppercase", "metadata.name", top={"metadata": {"name": "Hostile"}}),
    # --- search spaces, samplers, pruners, enums ------------------------------------------------
    Case("space-empty-range", "tuning.searchSpace", _space(eta={"type": "float", "low": 0.1, "high": 0.1})),
    Case("space-reversed-range", "tuning.searchSpace", _space(max_depth={"type": "int", "low": 9, "high": 2})),
    Case("space-missing-bounds", "tuning.searchSpace", _space(max_depth={"type": "int"})),
    Case("space-no-choices", "tuning.searchSpace", _space(grow_policy={"type": "categorical", "choices": []})),
    Case("space-log-negative-low", "tuning.searchSpace",
         _space(eta={"type": "float", "low": -1, "high": 0.3, "log": True})),
    Case("space-step-negative", "tuning.searchSpace",
         _space(max_depth={"type": "int", "low": 2, "high": 8, "step": -1})),
    Case("space-unknown-type", "tuning.searchSpace", _space(eta={"type": "complex", "low": 0.1, "high": 0.3})),
    Case("space-unknown-param", "tuning.searchSpace",
         _space(tree_method={"type": "categorical", "choices": ["hist"]})),
    Case("space-param-injection", "tuning.searchSpace", _space(**{"eta;drop": {"type": "int", "low": 1, "high": 3}})),
    Case("sampler-unknown", "tuning.sampler.type", {"tuning": {"sampler": {"type": "bruteforce"}}}),
    Case("sampler-seed-negative", "tuning.sampler.seed", {"tuning": {"sampler": {"seed": -1}}}),
    Case("pruner-unknown", "tuning.pruner.type", {"tuning": {"pruner": {"type": "sometimes"}}}),
    Case("metric-unknown", "tuning.metric", {"tuning": {"metric": "f1"}}),
    Case("direction-unknown", "tuning.direction", {"tuning": {"direction": "sideways"}}),
    Case("source-unknown", "data.source", {"data": {"source": "s3"}}),
    Case("interval-unknown", "data.interval", {"data": {"interval": "1s"}}),
    Case("device-unknown", "model.device", {"model": {"device": "tpu"}}),
    Case("feature-set-unknown", "features.set", {"features": {"set": "everything"}}),
    # --- Secrets: no other namespace, never a password in the spec -----------------------------
    Case("storage-secret-other-namespace", "tuning.storage.secretRef.namespace",
         {"tuning": {"storage": {"secretRef": {"name": "db", "key": "url", "namespace": "kube-system"}}}}),
    Case("data-secret-other-namespace", "data.secretRef.namespace",
         {"data": {"source": "postgres", "table": "bars",
                   "secretRef": {"name": "db", "key": "url", "namespace": "kube-system"}}}),
    Case("storage-secret-name-traversal", "tuning.storage.secretRef.name",
         {"tuning": {"storage": {"secretRef": {"name": "../kube-system/db"}}}}),
    Case("storage-secret-key-traversal", "tuning.storage.secretRef.key",
         {"tuning": {"storage": {"secretRef": {"name": "db", "key": "../../token"}}}}),
    Case("storage-inline-password", "tuning.storage.url",
         {"tuning": {"storage": {"url": "postgresql://nova:hunter2@db/nova"}}}),
    Case("pod-escape-field", "spec.hostNetwork", {"hostNetwork": True}),
    # --- types the API server refuses; the spec models are strict too (no lax coercion) -------
    Case("trials-numeric-string", "tuning.trials", {"tuning": {"trials": "100"}}),
    Case("trials-boolean", "tuning.trials", {"tuning": {"trials": True}}),
    Case("suspend-yes", "suspend", {"suspend": "yes"}),
    Case("name-55-chars", "metadata.name", top={"metadata": {"name": "a" * 55}}),
]
