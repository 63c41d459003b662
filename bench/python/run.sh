#!/usr/bin/env bash
# One command: Drover's Python worker against Celery on this machine, same run.
#   bash bench/python/run.sh          (Redis must listen on 127.0.0.1:6379; db 15 is used)
# Builds the release `drover`, a virtualenv with the SDK from sdk/python and Celery + the
# redis client from PyPI, then runs bench.py. BENCH_TASKS=N changes the backlog (10000).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${BENCH_VENV:-$root/target/bench-py-venv}"
if [ -z "${DROVER_BIN:-}" ]; then
  (cd "$root" && cargo build --release -p drover-cli)
  export DROVER_BIN="$root/target/release/drover"
fi
python3 -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q "$root/sdk/python" -r "$here/requirements.txt"
exec "$venv/bin/python" "$here/bench.py"
