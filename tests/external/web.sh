#!/usr/bin/env bash
# The web page (docs/reference.md, "Web page") in a real browser: Playwright for Python
# drives Debian's chromium (no browser download: its path is passed to Playwright) through
# add, bad input, edit (also against a change made meanwhile), delete, zones, cache flush,
# query log, status, blocklists and the allowlist, the token prompt, a 360 px wide screen and
# the keyboard alone, checking what the page shows against the API and against dig.
#
# Three rind-servers: "up" is only the upstream of "main" (its local records give main
# something to forward and cache); "guarded" runs with --api-token. Blocklists added by URL
# come from a python3 http.server on 127.0.0.1.
#
# Needs chromium, python3 (with venv), dig and curl; .ci/run installs them. The script makes
# a venv in target/web-venv and installs playwright into it from PyPI (once).
# Usage: tests/external/web.sh   (from anywhere; builds rind-server in debug)
#   WEB_SCREENSHOTS=docs/screenshots   also copy the desktop and phone screenshots there
#   KEEP_LOGS=1                        keep the work directory (logs, screenshots)
#   RIND_BIN=path                      use this rind-server instead
#   CHROMIUM=path                      use this browser (default: chromium on the PATH)
set -euo pipefail
cd "$(dirname "$0")/../.."

for tool in python3 dig curl; do
    command -v "$tool" >/dev/null || { echo "web.sh: $tool is not installed" >&2; exit 1; }
done
browser=${CHROMIUM:-$(command -v chromium || true)}
[ -x "$browser" ] || { echo "web.sh: chromium is not installed (apt-get install chromium)" >&2; exit 1; }

if [ -n "${RIND_BIN:-}" ]; then
    rind=$RIND_BIN
else
    cargo build --quiet -p rind-server
    rind="${CARGO_TARGET_DIR:-target}/debug/rind-server"
fi

venv="${CARGO_TARGET_DIR:-target}/web-venv"
if ! "$venv/bin/python" -c 'import playwright' 2>/dev/null; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'playwright>=1.40,<2'
fi

source tests/external/common.bash

token=web-test-token
start() { # name, then rind-server flags
    local name=$1 dns http
    shift
    dns=$(free_port)
    http=$(free_port)
    "$rind" --dns-addr "127.0.0.1:$dns" --http-addr "127.0.0.1:$http" \
        --data-dir "$work/$name-data" "$@" > "$work/$name.log" 2>&1 &
    pids+=("$!")
    for _ in $(seq 300); do
        curl -sf "http://127.0.0.1:$http/healthz" >/dev/null 2>&1 && break
        sleep 0.1
    done
    curl -sf "http://127.0.0.1:$http/healthz" >/dev/null || { echo "$name did not start:"; cat "$work/$name.log"; exit 1; }
    printf -v "${name}_dns" '%s' "$dns"
    printf -v "${name}_http" '%s' "$http"
}

start up --upstream 127.0.0.1:9
start main --upstream "127.0.0.1:$up_dns"
start guarded --upstream 127.0.0.1:9 --api-token "$token"

# The blocklists added by URL: a plain web server on 127.0.0.1 over a directory web.py
# writes the list files into.
mkdir -p "$work/lists"
lists_http=$(free_port)
python3 -m http.server --bind 127.0.0.1 --directory "$work/lists" "$lists_http" \
    > "$work/lists.log" 2>&1 &
pids+=("$!")
for _ in $(seq 100); do
    curl -sf -o /dev/null "http://127.0.0.1:$lists_http/" && break
    sleep 0.1
done
curl -sf -o /dev/null "http://127.0.0.1:$lists_http/" || { echo "the list server did not start:"; cat "$work/lists.log"; exit 1; }

status=0
"$venv/bin/python" tests/external/web.py \
    --browser "$browser" --work "$work" --token "$token" \
    --up "$up_http" --main "$main_http,$main_dns" --guarded "$guarded_http,$guarded_dns" \
    --lists "$lists_http" || status=$?

if [ -n "${WEB_SCREENSHOTS:-}" ]; then
    mkdir -p "$WEB_SCREENSHOTS"
    cp "$work"/web-*.png "$WEB_SCREENSHOTS"/ 2>/dev/null || true
fi
[ "$status" -eq 0 ] || { echo "web.sh: some checks failed (KEEP_LOGS=1 keeps $work)"; exit 1; }
echo "web.sh: all checks passed"
