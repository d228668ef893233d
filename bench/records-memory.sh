#!/usr/bin/env bash
# Memory per local record and the restart with them (issue 20's table): N records (default
# 193534: A, AAAA, TXT and MX mixed under one $ORIGIN) imported into a fresh rind in one POST,
# then the server restarted on the same store. Prints VmRSS of the fresh server, after the
# import, and after the restart, with the seconds from start to answering HTTP.
# Needs curl, python3. Not part of CI.
# usage: bench/records-memory.sh [N]   (RIND_BIN defaults to target/release/rind-server)
set -euo pipefail
if [ "${1:-}" = --help ] || [ "${1:-}" = -h ]; then
    sed -n '2,/^set /{/^#/s/^# \{0,1\}//p}' "$0"
    exit 0
fi
cd "$(dirname "$0")/.."
count=${1:-193534}
settle=${SETTLE:-5}
rind=${RIND_BIN:-target/release/rind-server}
work=$(mktemp -d /tmp/rind-records-bench.XXXXXX)
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

python3 - "$count" > "$work/records.zone" <<'PY'
import sys
n = int(sys.argv[1])
print("$ORIGIN bench.lan.\n$TTL 300")
for i in range(n):
    kind = i % 4
    if kind == 0:
        print(f"h{i} A 10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
    elif kind == 1:
        print(f"h{i} AAAA fd00::{i >> 16:x}:{i & 0xffff:x}")
    elif kind == 2:
        print(f'h{i} 60 TXT "host {i}" "rack {i % 40}"')
    else:
        print(f"h{i} MX 10 mail{i % 100}")
PY

# start: starts rind on $work/data, sets $pid, $http and $took (seconds to answering HTTP).
start() {
    local dns_port
    dns_port=$(port); http=$(port)
    local began=$EPOCHREALTIME
    "$rind" --dns-addr "127.0.0.1:$dns_port" --http-addr "127.0.0.1:$http" \
        --upstream 127.0.0.1:9 --data-dir "$work/data" --log-level warn > "$work/rind-$http.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    for _ in $(seq 1200); do
        curl -sf "http://127.0.0.1:$http/healthz" > /dev/null && break
        sleep 0.02
    done
    kill -0 "$pid" 2> /dev/null || { echo "rind-server exited:"; tail -5 "$work/rind-$http.log"; exit 1; }
    took=$(python3 -c "print(f'{$EPOCHREALTIME - $began:.2f}')")
}
rss() { awk '$1 == "VmRSS:" { printf "%.1f MiB", $2 / 1024 }' "/proc/$pid/status"; }

echo "records: $count, zone file $(wc -c < "$work/records.zone") bytes"
start
sleep "$settle"
echo "fresh server: VmRSS $(rss)"
curl -sS -o "$work/import.json" -w 'import: HTTP %{http_code} in %{time_total} s\n' \
    --data-binary @"$work/records.zone" "http://127.0.0.1:$http/api/v1/records/import"
sleep "$settle"
echo "after the import: VmRSS $(rss)"
kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
start
echo "restart: answering HTTP after $took s"
sleep "$settle"
echo "after the restart: VmRSS $(rss)"
