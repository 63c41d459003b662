#!/usr/bin/env bash
# The Python SDK's tests against the real `drover` binary (target/debug/drover unless
# DROVER_BIN is set): a virtualenv with the package installed from this directory, pytest and
# grpcio-tools (for the stub drift check), then pytest.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${DROVER_PY_VENV:-$root/target/py-sdk-venv}"
export DROVER_BIN="${DROVER_BIN:-$root/target/debug/drover}"
if [ ! -x "$DROVER_BIN" ]; then
  (cd "$root" && cargo build -p drover-cli)
fi
python3 -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q "$here" pytest "grpcio-tools==1.71.0"
cd "$here"
exec "$venv/bin/python" -m pytest -q tests "$@"
