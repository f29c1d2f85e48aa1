"""The files a serving runtime loads as they are, beside each symbol's model.

- `model-settings.json`: MLServer's model settings, runtime `mlserver_xgboost.XGBoostModel`, its
  `uri` the model JSON in the same folder: `mlserver start <symbol folder>` serves it.
- `inferenceservice.yaml`: a KServe `InferenceService` (serving.kserve.io/v1beta1), model format
  xgboost, V2 protocol, `storageUri` the symbol's folder (KServe copies the folder into the pod).

Requests carry the features by name, in the card's order (`features`), as a V2 request whose
`parameters.content_type` is `pd` (MLServer's pandas codec): the model knows its feature names and
XGBoost checks them, so a column in the wrong place is refused instead of silently mispredicted.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import yaml

MLSERVER_FILE = "model-settings.json"
KSERVE_FILE = "inferenceservice.yaml"
MLSERVER_IMPLEMENTATION = "mlserver_xgboost.XGBoostModel"
SERVING_URI_ENV = "NOVA_OUTPUT_SERVING_URI"


def service_name(run_name: str, symbol: str) -> str:
    """A DNS-1035 label for the InferenceService: <run>-<symbol>, lower case, at most 63 characters."""
    raw = f"{run_name}-{symbol}".lower()
    name = re.sub(r"[^a-z0-9]+", "-", raw).strip("-")
    if not name or not name[0].isalpha():
        name = f"m-{name}"
    return name[:63].rstrip("-")


def model_settings(symbol: str, card: dict[str, Any], run: dict[str, Any] | None = None) -> str:
    run = run or {}
    version = f"{run.get('name', 'local')}-g{run.get('generation', 1)}"
    return json.dumps({
        "name": symbol,
        "implementation": MLSERVER_IMPLEMENTATION,
        "parameters": {"uri": "./model.json", "version": version},
    }, indent=2) + "\n"


def inference_service(symbol: str, folder_uri: str, run: dict[str, Any] | None = None) -> str:
    run = run or {}
    name = service_name(run.get("name", "nova"), symbol)
    metadata: dict[str, Any] = {"name": name, "labels": {"nova.dev/run": run.get("name", "local"),
                                                          "nova.dev/symbol": re.sub(r"[^A-Za-z0-9._-]", "_", symbol)}}
    if run.get("namespace"):
        metadata["namespace"] = run["namespace"]
    manifest = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": metadata,
        "spec": {"predictor": {"model": {
            "modelFormat": {"name": "xgboost"},
            "protocolVersion": "v2",
            "storageUri": folder_uri,
        }}},
    }
    return yaml.safe_dump(manifest, sort_keys=False)


def storage_uri(folder_uri: str, symbol: str) -> str:
    """What KServe's storageUri must say for a symbol's folder: the folder's own URI on an object
    store; on the operator's output claim, pvc://<claim>/<namespace>/<run>/<symbol> (the refit pod
    gets that prefix as $NOVA_OUTPUT_SERVING_URI, since it sees the claim only as a mounted path)."""
    base = os.environ.get(SERVING_URI_ENV)
    return f"{base.rstrip('/')}/{symbol}" if base and "://" not in folder_uri else folder_uri


def v2_request(frame, name: str = "features") -> dict[str, Any]:
    """A V2 inference request for the rows of `frame` (columns = the model's features, in order),
    decoded by MLServer's pandas codec into a DataFrame with those column names."""
    inputs = []
    for col in frame.columns:
        values = frame[col].astype("float64").tolist()
        inputs.append({"name": str(col), "shape": [len(values), 1], "datatype": "FP64",
                       "data": [None if v != v else v for v in values]})
    return {"id": name, "parameters": {"content_type": "pd"}, "inputs": inputs}
