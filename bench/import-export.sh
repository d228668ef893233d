#!/usr/bin/env bash
# The closing note's import/export figures: a master file of N records (default 100000: A,
# AAAA, TXT and MX mixed, relative names under one $ORIGIN) imported into an empty rind in one
# POST, then exported whole. Prints the seconds of each request (curl's time_total), the
# VmRSS before the import and the peak (VmHWM) after each step, and checks that the export
# holds N records and that a second import of the same file creates none.
# Needs curl, python3. Not part of CI.
# usage: bench/import-export.sh [N]   (RIND_BIN defaults to target/release/rind-server)
set -euo pipefail
if [ "${1:-}" = --help ] || [ "${1:-}" = -h ]; then
    sed -n '2,/^set /{/^#/s/^# \{0,1\}//p}' "$0"
    exit 0
fi
cd "$(dirname "$0")/.."
count=${1:-100000}
rind=${RIND_BIN:-target/release/rind-server}
work=$(mktemp -d /tmp/rind-import-bench.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
dns_port=$(port); http_port=$(port)
api="http://127.0.0.1:$http_port/api/v1"

python3 - "$count" > "$work/big.zone" <<'PY'
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

"$rind" --dns-addr "127.0.0.1:$dns_port" --http-addr "127.0.0.1:$http_port" --upstream 127.0.0.1:9 \
    --data-dir "$work/data" --log-level warn > "$work/rind.log" 2>&1 &
pid=$!
pids+=("$pid")
for _ in $(seq 600); do curl -sf "http://127.0.0.1:$http_port/healthz" >/dev/null && break; sleep 0.1; done
mem() { awk -v k="$1:" '$1 == k { print $2 " kB" }' "/proc/$pid/status"; }

echo "file: $count records, $(wc -c < "$work/big.zone") bytes"
echo "before import: VmRSS $(mem VmRSS), VmHWM $(mem VmHWM)"
curl -sS -o "$work/import.json" -w 'import: HTTP %{http_code} in %{time_total} s\n' \
    --data-binary @"$work/big.zone" "$api/records/import"
cat "$work/import.json"; echo
echo "after import: VmRSS $(mem VmRSS), VmHWM $(mem VmHWM)"
curl -sS -o "$work/export.zone" -w 'export: HTTP %{http_code} in %{time_total} s\n' "$api/records/export"
echo "export: $(grep -vc '^;' "$work/export.zone") records, $(wc -c < "$work/export.zone") bytes"
echo "after export: VmRSS $(mem VmRSS), VmHWM $(mem VmHWM)"
curl -sS -w ' (again: HTTP %{http_code} in %{time_total} s)\n' --data-binary @"$work/big.zone" "$api/records/import"
