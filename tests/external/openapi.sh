#!/usr/bin/env bash
# The OpenAPI document as the reference: schemathesis (from PyPI, in a venv this script makes)
# generates requests from /api/v1/openapi.json against a running rind-server and checks
# every response: no 5xx, every status code, content type, header and body as documented,
# and requests that break the schema refused with 4xx. A bounded number of examples per
# operation (OPENAPI_EXAMPLES, default 100), a fixed seed so a failure replays.
#
# Needs python3 with venv (python3-venv) and PyPI; .ci/run installs them.
# Usage: tests/external/openapi.sh   (from anywhere; builds rind-server in debug)
set -euo pipefail
cd "$(dirname "$0")/../.."

command -v python3 >/dev/null || { echo "openapi.sh: python3 is not installed" >&2; exit 1; }

cargo build --quiet -p rind-server
rind="${CARGO_TARGET_DIR:-target}/debug/rind-server"

source tests/external/common.bash

# One venv per checkout, kept between runs (schemathesis is a large install).
# Absolute: schemathesis runs from the scratch directory.
venv=$(realpath -m "${RIND_VENV:-${CARGO_TARGET_DIR:-target}/venv-schemathesis}")
if [ ! -x "$venv/bin/schemathesis" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet 'schemathesis>=4,<5'
fi

dns_port=$(free_port)
http_port=$(free_port)
list_port=$(free_port)
# Blocklists are fetched from here only: openapi_hooks.py points every fetchable URL at it.
mkdir -p "$work/lists"
printf '0.0.0.0 ads.openapi.test\n||tracker.openapi.test^\n' > "$work/lists/list.txt"
(cd "$work/lists" && exec python3 -m http.server --bind 127.0.0.1 "$list_port") \
    > "$work/lists.log" 2>&1 &
pids+=($!)
token=openapi-check
# The upstream is a closed local port: nothing generated here leaves the machine.
"$rind" --dns-addr "127.0.0.1:$dns_port" --http-addr "127.0.0.1:$http_port" \
    --data-dir "$work/data" --upstream 127.0.0.1:9 --api-token "$token" \
    > "$work/rind.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$http_port/healthz" > /dev/null && break
    sleep 0.1
done

hooks="$PWD/tests/external"
checks=not_a_server_error,status_code_conformance,content_type_conformance
checks+=,response_headers_conformance,response_schema_conformance,negative_data_rejection
if (cd "$work" && PYTHONPATH="$hooks" SCHEMATHESIS_HOOKS=openapi_hooks \
        RIND_LIST_URL="http://127.0.0.1:$list_port/list.txt" "$venv/bin/schemathesis" run \
        "http://127.0.0.1:$http_port/api/v1/openapi.json" \
        -H "Authorization: Bearer $token" \
        --checks "$checks" \
        --max-examples "${OPENAPI_EXAMPLES:-100}" --seed 14 \
        --generation-database none --no-color --workers 2) > "$work/schemathesis.log" 2>&1; then
    pass "schemathesis: $(grep -E '^ *[0-9]+ generated' "$work/schemathesis.log" | tr -s ' ')"
else
    cat "$work/schemathesis.log"
    fail "schemathesis found responses that do not match the document"
fi
grep -E 'Selected:|Tested:' "$work/schemathesis.log" || true

if ! kill -0 "${pids[0]}" 2>/dev/null; then
    fail "rind-server exited during the run"; tail -20 "$work/rind.log"
fi
if [ "$failures" -gt 0 ]; then
    echo "openapi.sh: $failures failed"; exit 1
fi
echo "openapi.sh: all passed"
