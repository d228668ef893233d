#!/usr/bin/env bash
# The blocklist memory and load-time figures: a hosts file of N distinct names (default
# 1000000, about 27 characters each) served from 127.0.0.1 and added to an empty rind by URL.
# Prints VmRSS before the add, right after it and once jemalloc has had SETTLE seconds
# (default 15) to hand freed pages back, with the peak (VmHWM); the seconds the add took; then,
# after a graceful restart with the list in the store, the seconds from start to answering
# HTTP and the settled VmRSS, against a fresh server without lists.
# Needs curl, python3. Not part of CI.
# usage: bench/blocklist.sh [N]   (RIND_BIN defaults to target/release/rind-server)
set -euo pipefail
if [ "${1:-}" = --help ] || [ "${1:-}" = -h ]; then
    sed -n '2,/^set /{/^#/s/^# \{0,1\}//p}' "$0"
    exit 0
fi
cd "$(dirname "$0")/.."
count=${1:-1000000}
settle=${SETTLE:-15}
rind=${RIND_BIN:-target/release/rind-server}
work=$(mktemp -d /tmp/rind-blocklist-bench.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
# A port free for both TCP and UDP (the DNS listener takes both).
port() {
    python3 - <<'PY'
import socket
for _ in range(100):
    t = socket.socket(); t.bind(("127.0.0.1", 0)); p = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", p))
    except OSError:
        continue
    print(p)
    break
PY
}
list_port=$(port)

mkdir -p "$work/www"
python3 - "$count" > "$work/www/hosts" <<'PY'
import sys
n = int(sys.argv[1])
out = sys.stdout
out.write("# synthetic blocklist\n")
for i in range(n):
    out.write(f"0.0.0.0 ad{i:07d}.tracker{i % 977}.example\n")
PY
(cd "$work/www" && exec python3 -m http.server --bind 127.0.0.1 "$list_port") > "$work/www.log" 2>&1 &
pids+=($!)

# start DIR: starts rind on DIR, sets $pid, $http and $took (seconds to answering HTTP).
start() {
    local dns_port
    dns_port=$(port); http=$(port)
    local began=$EPOCHREALTIME
    "$rind" --dns-addr "127.0.0.1:$dns_port" --http-addr "127.0.0.1:$http" \
        --upstream 127.0.0.1:9 --data-dir "$1" --log-level info > "$work/rind-$http.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    for _ in $(seq 1200); do
        curl -sf "http://127.0.0.1:$http/healthz" > /dev/null && break
        sleep 0.05
    done
    kill -0 "$pid" 2> /dev/null || { echo "rind-server exited:"; tail -5 "$work/rind-$http.log"; exit 1; }
    took=$(python3 -c "print(f'{$EPOCHREALTIME - $began:.2f}')")
}
mem() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$pid/status"; }
mib() { python3 -c "print(f'{$1 / 1024:.1f} MiB')"; }

for _ in $(seq 100); do curl -sf "http://127.0.0.1:$list_port/hosts" -o /dev/null && break; sleep 0.1; done
echo "list: $count names, $(wc -c < "$work/www/hosts") bytes"

start "$work/fresh"
sleep "$settle"
fresh=$(mem VmRSS)
echo "fresh server, settled: VmRSS $(mib "$fresh")"
curl -sS -o "$work/add.json" -w 'add: HTTP %{http_code} in %{time_total} s\n' \
    -H 'content-type: application/json' \
    --data "{\"url\": \"http://127.0.0.1:$list_port/hosts\", \"name\": \"bench\"}" \
    "http://127.0.0.1:$http/api/v1/blocklists"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("  domains", d.get("domains"), "skipped", d.get("skipped"), d.get("error") or "")' "$work/add.json"
echo "right after the add: VmRSS $(mib "$(mem VmRSS)"), peak VmHWM $(mib "$(mem VmHWM)")"
sleep "$settle"
after=$(mem VmRSS)
echo "settled: VmRSS $(mib "$after") (+$(mib $((after - fresh))) over the fresh server)"
kill -TERM "$pid"; wait "$pid" 2>/dev/null || true

start "$work/fresh"
echo "restart with the list in the store: answering HTTP after $took s"
grep -o 'blocklists loaded.*' "$work/rind-$http.log" | head -1 || true
sleep "$settle"
restarted=$(mem VmRSS)
echo "restarted, settled: VmRSS $(mib "$restarted") (+$(mib $((restarted - fresh))) over the fresh server), peak VmHWM $(mib "$(mem VmHWM)")"
