#!/usr/bin/env bash
# On the GPU machine, which reaches no registry: install what bench/gpu.py and tests/gpu need from
# the wheels bench/gpu_wheels.sh downloaded ahead, then check that the GPU path is really there.
#
#   bench/gpu_install.sh [WHEELS=wheels] [VENV=.venv-gpu]
#       a bare machine: a new venv, exactly WHEELS/requirements.txt (resolved from WHEELS only),
#       Nova itself from this checkout (a .pth naming its source roots: no build step, no setuptools).
#   bench/gpu_install.sh --target DIR WHEELS...
#       a machine whose python3 already has part of the stack (a CUDA image with numpy, cupy...):
#       unpack only the given wheel folders into DIR with --no-deps; then export PYTHONPATH=DIR:<repo
#       roots> as printed. Every folder may be installed in a separate call (size limits on transfers).
#
# Afterwards:  $PY bench/gpu.py   and   $PY -m pytest -m gpu tests/gpu -v
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
ROOTS="$REPO:$REPO/operator:$REPO/trainer_image"

if [ "${1:-}" = "--target" ]; then
  TARGET=$2; shift 2
  [ $# -gt 0 ] || { echo "usage: $0 --target DIR WHEEL_FOLDER..." >&2; exit 2; }
  mkdir -p "$TARGET"
  for folder in "$@"; do
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$TARGET" "$folder"/*.whl
  done
  export PYTHONPATH="$TARGET:$ROOTS"
  echo "export PYTHONPATH=$PYTHONPATH"
else
  WHEELS=${1:-wheels}
  VENV=${2:-.venv-gpu}
  [ -f "$WHEELS/requirements.txt" ] || { echo "$WHEELS/requirements.txt missing: run bench/gpu_wheels.sh first" >&2; exit 2; }
  $PY -m venv "$VENV"
  "$VENV/bin/python" -m pip install --no-index --find-links "$WHEELS" -r "$WHEELS/requirements.txt"
  SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  printf '%s\n' "$REPO" "$REPO/operator" "$REPO/trainer_image" > "$SITE/nova-src.pth"
  PY="$VENV/bin/python"
  echo "installed into $VENV; use $PY"
fi

# The check: each line names what it found; any failure exits non-zero. SKIP_CHECK=1 skips it (a
# --target install split over calls, before the last folder is in).
[ "${SKIP_CHECK:-0}" = 1 ] && exit 0
$PY - <<'CHECK'
import sys
import xgboost as xgb
import cupy, rmm, pynvml, optuna
from nova_trainer.device import gpu_count, resolve_device
info = xgb.build_info()
print(f"python {sys.version.split()[0]}, xgboost {xgb.__version__} (USE_CUDA={info.get('USE_CUDA')}, "
      f"USE_RMM={info.get('USE_RMM')}, CUDA {info.get('CUDA_VERSION')}), rmm {rmm.__version__}, "
      f"cupy {cupy.__version__}, optuna {optuna.__version__}")
n = gpu_count()
print(f"CUDA devices: {n}; model.device auto -> {resolve_device('auto')}")
if n == 0 or not info.get("USE_CUDA"):
    sys.exit("no usable CUDA path: no device visible or an XGBoost built without CUDA")
CHECK
