#!/usr/bin/env bash
# The REST contract test: Schemathesis (pinned in requirements.txt) generates requests from
# /openapi.json, valid and invalid, and checks every answer against it (`--checks all`): no 5xx,
# only documented statuses, content types and bodies, valid requests accepted, invalid ones
# refused. Against the debug `drover` binary, with a token, on an ephemeral loopback port.
#
#   tests/contract/run.sh                         # the CI run: fixed seed, bounded examples
#   CONTRACT_SEED=1 CONTRACT_EXAMPLES=50 tests/contract/run.sh
#   tests/contract/run.sh --include-path /v1/tasks   # extra arguments go to `st run`
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
seed="${CONTRACT_SEED:-327674873561197712599965707334843396001}"
examples="${CONTRACT_EXAMPLES:-20}"

cd "$root"
if [ -z "${DROVER_BIN:-}" ]; then
  cargo build -p drover-cli
fi
bin="${DROVER_BIN:-$root/target/debug/drover}"

# Python with venv, and curl (installed here when missing, as root, like tests/browser/run.sh).
need_apt=()
python3 -c "import ensurepip, venv" 2>/dev/null || need_apt+=(python3 python3-venv)
command -v curl >/dev/null || need_apt+=(curl)
if [ "${#need_apt[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${need_apt[@]}"
  else
    echo "run.sh: please install: sudo apt-get install -y ${need_apt[*]}" >&2
    exit 1
  fi
fi

# Schemathesis in a virtualenv of its own, installed once per pinned version.
venv="${CONTRACT_VENV:-$root/target/contract-venv}"
if ! cmp -s "$here/requirements.txt" "$venv/requirements.txt" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
  cp "$here/requirements.txt" "$venv/requirements.txt"
fi

# The store in memory where there is a tmpfs: every state change commits with fsync.
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
  tmp="$(mktemp -d -p /dev/shm drover-contract.XXXXXX)"
else
  tmp="$(mktemp -d)"
fi
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# Port 0: the server picks a free port and prints it.
: >"$tmp/server.log"
RUST_LOG=warn "$bin" server --listen 127.0.0.1:0 --store "sqlite://$tmp/drover.db" \
  --rate-limit 0 >"$tmp/server.log" 2>&1 &
server_pid=$!
url=""
for _ in $(seq 100); do
  url="$(sed -n 's/^drover server listening on \(http:[^ ]*\).*/\1/p' "$tmp/server.log" | head -1)"
  if [ -n "$url" ] && curl -sf "$url/readyz" >/dev/null; then
    break
  fi
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "contract: the server did not start:" >&2
    cat "$tmp/server.log" >&2
    exit 1
  fi
  url=""
  sleep 0.1
done
if [ -z "$url" ]; then
  echo "contract: the server is not ready after 10 s" >&2
  cat "$tmp/server.log" >&2
  exit 1
fi

echo "contract: $url, seed $seed, $examples examples per operation"
status=0
token="$(cat "$tmp/admin.token")"
# From the temp dir, where Schemathesis keeps its cache.
(cd "$tmp" && PYTHONPATH="$here" SCHEMATHESIS_HOOKS=hooks \
  "$venv/bin/st" --config-file "$here/schemathesis.toml" --no-color run "$url/openapi.json" \
  --checks all \
  -H "Authorization: Bearer $token" \
  --max-examples "$examples" \
  --seed "$seed" \
  "$@") || status=$?
if grep -q "panicked" "$tmp/server.log"; then
  echo "contract: the server panicked:" >&2
  grep -A5 "panicked" "$tmp/server.log" >&2
  status=1
fi
exit "$status"
