#!/usr/bin/env bash
# Download, on a machine that reaches PyPI, every wheel bench/gpu.py and tests/gpu need, for a bare
# x86-64 GPU machine that reaches no registry. Nothing is installed here. The wheels are not
# committed (wheels/ and *.whl are in .gitignore); copy the folder to the GPU machine and run
# bench/gpu_install.sh there.
#
#   bench/gpu_wheels.sh [DEST=wheels] [PYTHON_VERSION=3.12]
#
# The Python version must be the one the GPU machine will run (`python3 --version` there).
# Versions are pinned to what Nova is tested with (the repo's .venv); the CUDA 13 xgboost wheel
# on PyPI goes with rmm-cu13 and cupy-cuda13x.
set -euo pipefail

DEST=${1:-wheels}
PYVER=${2:-3.12}
ABI="cp${PYVER/./}"
HERE=$(cd "$(dirname "$0")" && pwd)
PIP=${PIP:-"$HERE/../.venv/bin/python -m pip"}
[ -x "$HERE/../.venv/bin/python" ] || PIP="python3 -m pip"

mkdir -p "$DEST"
# One requirement per line; gpu_install.sh installs exactly this list from $DEST.
cat > "$DEST/requirements.txt" <<'REQ'
# GPU bench + tests (what is GPU-specific)
xgboost==3.4.1
rmm-cu13==26.10.*
cupy-cuda13x==14.2.0
nvidia-ml-py==13.615.71
# the trainer code the bench imports (nova, nova_trainer)
numpy==2.5.5
pandas==3.1.1
pyarrow==26.0.1
scipy==1.18.1
scikit-learn==1.9.1
optuna==5.0.0
optuna-integration==5.0.0
SQLAlchemy==2.1.9
alembic==1.20.1
pydantic==2.14.4
PyYAML==6.0.4
TA-Lib==0.8.2
psutil==7.2.2
# the tests
pytest==9.2.0
pytest-timeout==2.4.0
REQ

# pip matches manylinux tags exactly, so name every glibc level an x86-64 GPU image may accept.
PLATFORMS=()
for tag in manylinux_2_39 manylinux_2_35 manylinux_2_34 manylinux_2_31 manylinux_2_28 manylinux_2_27 \
           manylinux_2_24 manylinux_2_17 manylinux2014 manylinux1; do
  PLATFORMS+=(--platform "${tag}_x86_64")
done

# RAPIDS wheels (rmm-cu13, librmm-cu13, rapids-logger) are on PyPI. Set EXTRA_INDEX to add another
# index (e.g. EXTRA_INDEX=https://pypi.nvidia.com) where PyPI lacks a build.
EXTRA=()
[ -n "${EXTRA_INDEX:-}" ] && EXTRA=(--extra-index-url "$EXTRA_INDEX")
$PIP download --only-binary=:all: --python-version "$PYVER" --implementation cp --abi "$ABI" \
    --abi abi3 --abi none "${PLATFORMS[@]}" --platform any \
    "${EXTRA[@]}" \
    -d "$DEST" -r "$DEST/requirements.txt"

echo
echo "wheels for CPython $PYVER in $DEST ($(ls "$DEST"/*.whl | wc -l) files, $(du -sh "$DEST" | cut -f1)):"
ls -1 "$DEST"/*.whl | sed 's#.*/#  #'
echo "copy $DEST/ and the repository to the GPU machine, then: bench/gpu_install.sh $DEST"
