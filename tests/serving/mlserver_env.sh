#!/usr/bin/env bash
# A virtual environment with the real MLServer and its XGBoost runtime (PyPI), apart from Nova's own
# (their pins differ from Nova's dev venv): ${NOVA_CACHE:-$HOME/.cache/nova}/mlserver-<version>.
#
#   tests/serving/mlserver_env.sh          # creates it once; a warm run returns at once
#   tests/serving/mlserver_env.sh --print  # prints its `mlserver` executable and exits
set -euo pipefail
MLSERVER_VERSION=1.7.1
OUT="${NOVA_CACHE:-$HOME/.cache/nova}/mlserver-$MLSERVER_VERSION"
if [[ "${1:-}" == "--print" ]]; then echo "$OUT/bin/mlserver"; exit 0; fi
if [[ -x "$OUT/bin/mlserver" && -f "$OUT/.installed" ]]; then exit 0; fi
py=""
for c in python3.12 "$HOME"/.pyenv/versions/3.12*/bin/python /usr/bin/python3.12; do
  if "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' >/dev/null 2>&1; then py="$c"; break; fi
done
[[ -n "$py" ]] || { echo "mlserver_env.sh: MLServer $MLSERVER_VERSION needs Python 3.12 (not found)" >&2; exit 3; }
rm -rf "$OUT"
"$py" -m venv "$OUT"
"$OUT/bin/python" -m pip install -q --upgrade pip
"$OUT/bin/python" -m pip install -q "mlserver==$MLSERVER_VERSION" "mlserver-xgboost==$MLSERVER_VERSION"
touch "$OUT/.installed"
