#!/usr/bin/env bash
# The blocklist memory and load-time figures: a hosts file of N distinct names (default
# 1000000, about 27 characters each) served from 127.0.0.1 and added to an empty rind by URL.
# Prints VmRSS before the add, right after it and after SETTLE seconds (default 15), with the
# peak (VmHWM); the seconds the add took; then, after a graceful restart with the list in the
# store, the seconds from start to answering HTTP and the settled VmRSS.
# Needs curl, python3. Not part of CI.
# usage: bench/blocklist.sh [N]   (RIND_BIN defaults to target/release/rind-server)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib/single.bash
count=${1:-1000000}
settle=${SETTLE:-15}

mkdir -p "$work/www"
python3 - "$count" > "$work/www/hosts" <<'PY'
import sys
n = int(sys.argv[1])
out = sys.stdout
out.write("# synthetic blocklist\n")
for i in range(n):
    out.write(f"0.0.0.0 ad{i:07d}.tracker{i % 977}.example\n")
PY
# mib_between KB KB: the difference in MiB.
mib_between() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f MiB", (b - a) / 1024 }'; }
list_port=$(free_port)
(cd "$work/www" && exec python3 -m http.server --bind 127.0.0.1 "$list_port") > "$work/www.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$list_port/hosts" -o /dev/null && break; sleep 0.1; done
echo "list: $count names, $(wc -c < "$work/www/hosts") bytes"

RIND_LOG_LEVEL=info start_rind "$work/data"
sleep "$settle"
fresh=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$pid/status")
echo "fresh server, settled: VmRSS $(status_mib VmRSS)"
curl -sS -o "$work/add.json" -w 'add: HTTP %{http_code} in %{time_total} s\n' \
    -H 'content-type: application/json' \
    --data "{\"url\": \"http://127.0.0.1:$list_port/hosts\", \"name\": \"bench\"}" \
    "$api/blocklists"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("  domains", d.get("domains"), "skipped", d.get("skipped"), d.get("error") or "")' "$work/add.json"
echo "right after the add: VmRSS $(status_mib VmRSS), peak VmHWM $(status_mib VmHWM)"
sleep "$settle"
after=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$pid/status")
echo "settled: VmRSS $(status_mib VmRSS) (+$(mib_between "$fresh" "$after") over the fresh server)"
stop_rind

RIND_LOG_LEVEL=info start_rind "$work/data"
echo "restart with the list in the store: answering HTTP after $took s"
grep -o 'blocklists loaded.*' "$work/rind-$http_port.log" | head -1 || true
sleep "$settle"
restarted=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$pid/status")
echo "restarted, settled: VmRSS $(status_mib VmRSS) (+$(mib_between "$fresh" "$restarted") over the fresh server), peak VmHWM $(status_mib VmHWM)"
