#!/usr/bin/env bash
# The dashboard's browser tests in one command: builds the `drover` binary, installs what is
# missing (Debian's Chromium and a Chinese font when run as root; playwright-core from npm),
# and runs them with node's test runner. Screenshots land in artifacts/screenshots/.
#
#   tests/browser/run.sh                      # everything
#   tests/browser/run.sh --test-name-pattern=workflow
#   DROVER_WEB_FROM_DISK=1 tests/browser/run.sh   # page assets from web/, no rebuild needed
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
chromium="${CHROMIUM_PATH:-/usr/bin/chromium}"

cd "$root"
if [ -z "${DROVER_BIN:-}" ]; then
  cargo build -p drover-cli
fi

need_apt=()
[ -x "$chromium" ] || need_apt+=(chromium)
# Without a CJK font the Chinese pages render as boxes in the screenshots.
dpkg -s fonts-wqy-microhei >/dev/null 2>&1 || fc-list :lang=zh 2>/dev/null | grep -q . || need_apt+=(fonts-wqy-microhei)
command -v node >/dev/null || need_apt+=(nodejs npm)
if [ "${#need_apt[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${need_apt[@]}"
  else
    echo "run.sh: please install: sudo apt-get install -y ${need_apt[*]}" >&2
    [ -x "$chromium" ] && command -v node >/dev/null || exit 1
  fi
fi

cd "$here"
if [ ! -d node_modules/playwright-core ]; then
  npm ci --no-audit --no-fund
fi
mkdir -p "$root/artifacts/screenshots"
exec node --test --test-concurrency=1 "$@" i18n.test.mjs dashboard.test.mjs
