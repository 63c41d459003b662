#!/usr/bin/env bash
# One command: Drover beside BullMQ and Celery (each on Redis without persistence and with
# appendfsync always) on the same three workloads, in one run on this machine.
#
#   bash bench/peers/run.sh [--tasks 20000] [--reps 3] [--rates 100,500] [--paced-seconds 3]
#                           [--only drover-node,bullmq,drover-py,celery] [--out FILE]
#
# Installs what it needs: redis-server from Debian if missing, BullMQ from npm into
# bench/peers/node_modules (package-lock.json), Celery from PyPI and the Python SDK (sdk/python)
# into bench/peers/.venv; builds the release `drover` unless DROVER_BIN names one. Starts its own
# redis-server instances on free 127.0.0.1 ports in a temporary directory (never the machine's
# Redis on 6379) and ends everything it started, by pid, when it exits. Needs no stdin (CI=true
# works). Prints one Markdown table; writes the raw runs and the medians as JSON
# (bench/peers/results/peers-DATE.json unless --out). Not part of the default test run.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

tasks=20000 reps=3 rates=100,500 paced_seconds=3 only="drover-node,bullmq,drover-py,celery" out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --tasks) tasks="$2"; shift 2 ;;
    --reps) reps="$2"; shift 2 ;;
    --rates) rates="$2"; shift 2 ;;
    --paced-seconds) paced_seconds="$2"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}" DEBIAN_FRONTEND=noninteractive
say() { echo "peers: $*" >&2; }

# ---- dependencies ----
apt_install() {
  local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo -n"
  $sudo apt-get install -y -q "$@" </dev/null || { $sudo apt-get update -q </dev/null && $sudo apt-get install -y -q "$@" </dev/null; }
}
command -v redis-server >/dev/null || { say "installing redis-server"; apt_install redis-server; }
command -v node >/dev/null && command -v npm >/dev/null || { say "installing nodejs, npm"; apt_install nodejs npm; }
python3 -c 'import venv, ensurepip' 2>/dev/null || { say "installing python3-venv"; apt_install python3-venv; }

lock_sum="$(sha256sum "$here/package-lock.json" | cut -d' ' -f1)"
if [ "$(cat "$here/node_modules/.peers-lock" 2>/dev/null)" != "$lock_sum" ]; then
  say "npm ci (BullMQ)"
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error </dev/null)
  echo "$lock_sum" >"$here/node_modules/.peers-lock"
fi
venv="$here/.venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import celery, drover, redis' 2>/dev/null; then
  say "virtualenv (Celery, redis-py, Drover's Python SDK)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "$root/sdk/python" -r "$here/requirements.txt" </dev/null
fi
if [ -z "${DROVER_BIN:-}" ]; then
  say "cargo build --release -p drover-cli"
  (cd "$root" && cargo build --release -q -p drover-cli </dev/null)
  DROVER_BIN="$root/target/release/drover"
fi
export DROVER_BIN

# ---- our own processes, ended by pid ----
tmp="$(mktemp -d "${TMPDIR:-/tmp}/drover-peers.XXXXXX")"
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
declare -A redis_url
start_redis() { # name, extra config...
  local name="$1"; shift
  local port; port="$(free_port)"
  [ "$port" != 6379 ] || port="$(free_port)"
  mkdir -p "$tmp/$name"
  redis-server --bind 127.0.0.1 --port "$port" --dir "$tmp/$name" --save "" --daemonize no \
    --logfile "$tmp/$name/redis.log" "$@" </dev/null &
  pids+=($!)
  local i
  for i in $(seq 100); do
    redis-cli -p "$port" ping 2>/dev/null | grep -q PONG && break
    sleep 0.05
  done
  redis-cli -p "$port" ping | grep -q PONG || { say "redis $name did not start"; cat "$tmp/$name/redis.log" >&2; exit 1; }
  redis_url[$name]="redis://127.0.0.1:$port/0"
}
start_redis mem --appendonly no
start_redis aof --appendonly yes --appendfsync always
start_redis metrics --appendonly no
say "redis: no persistence ${redis_url[mem]}, appendfsync always ${redis_url[aof]}"

# The load average, sampled every 5 s during the run.
(while :; do cut -d' ' -f1 /proc/loadavg; sleep 5; done) >"$tmp/load" &
pids+=($!)

raw="$tmp/raw.jsonl"
common=(--tasks "$tasks" --rates "$rates" --paced-seconds "$paced_seconds")
run() { # label, redis mode ("" for none), command...
  local label="$1" mode="$2"; shift 2
  say "rep $rep: $label${mode:+ (redis $mode)}"
  local line
  if line="$(timeout -k 10 900 "$@" </dev/null | tail -n 1)" && [ -n "$line" ]; then
    printf '{"rep": %d, "label": "%s", "redis": "%s", "result": %s}\n' "$rep" "$label" "$mode" "$line" >>"$raw"
  else
    say "FAILED: $label${mode:+ (redis $mode)}, rep $rep"
    printf '{"rep": %d, "label": "%s", "redis": "%s", "result": null}\n' "$rep" "$label" "$mode" >>"$raw"
  fi
}
has() { [[ ",$only," == *",$1,"* ]]; }
for rep in $(seq "$reps"); do
  # Interleaved, so a change in the machine's load falls on every system alike.
  if has drover-node; then run drover-node "" node "$here/node.mjs" --system drover "${common[@]}"; fi
  for mode in mem aof; do
    if has bullmq; then
      redis-cli -u "${redis_url[$mode]}" flushall >/dev/null
      run bullmq "$mode" node "$here/node.mjs" --system bullmq --redis "${redis_url[$mode]}" "${common[@]}"
    fi
  done
  if has drover-py; then run drover-py "" "$venv/bin/python" "$here/py.py" --system drover "${common[@]}"; fi
  for mode in mem aof; do
    if has celery; then
      run celery "$mode" "$venv/bin/python" "$here/py.py" --system celery --broker "${redis_url[$mode]}" \
        --metrics "${redis_url[metrics]}" "${common[@]}"
    fi
  done
done

versions="$(printf '{"redis": "%s", "bullmq": "%s", "celery": "%s", "node": "%s", "python": "%s", "drover": "%s"}' \
  "$(redis-server --version | sed -E 's/.*v=([^ ]+).*/\1/')" \
  "$(node -p 'require(process.argv[1]).version' "$here/node_modules/bullmq/package.json")" \
  "$("$venv/bin/python" -c 'import celery; print(celery.__version__)')" \
  "$(node --version)" "$("$venv/bin/python" -c 'import platform; print(platform.python_version())')" \
  "$(cd "$root" && git rev-parse --short HEAD 2>/dev/null || echo unknown)")"
mkdir -p "$here/results"
out="${out:-$here/results/peers-$(date -u +%Y-%m-%d).json}"
python3 "$here/report.py" --raw "$raw" --load "$tmp/load" --versions "$versions" --tasks "$tasks" \
  --cores "$(nproc)" --out "$out"
say "JSON: $out"
