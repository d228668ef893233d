#!/usr/bin/env bash
# Memory per local record and the restart with them (issue 20's table): N records (default
# 193534: A, AAAA, TXT and MX mixed under one $ORIGIN) imported into a fresh rind in one POST,
# then the server restarted on the same store. Prints VmRSS of the fresh server, after the
# import, and after the restart, with the seconds the stop took and from start to answering
# HTTP.
# Needs curl, python3. Not part of CI.
# usage: bench/records-memory.sh [N]   (RIND_BIN defaults to target/release/rind-server)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib/single.bash
count=${1:-193534}
settle=${SETTLE:-5}

python3 bench/lib/gen_zone.py "$count" > "$work/records.zone"
echo "records: $count, zone file $(wc -c < "$work/records.zone") bytes"
start_rind "$work/data"
sleep "$settle"
echo "fresh server: VmRSS $(status_mib VmRSS)"
curl -sS -o "$work/import.json" -w 'import: HTTP %{http_code} in %{time_total} s\n' \
    --data-binary @"$work/records.zone" "$api/records/import"
sleep "$settle"
echo "after the import: VmRSS $(status_mib VmRSS)"
stop_rind
echo "stop (SIGTERM to exit): $stop_took s"
start_rind "$work/data"
echo "restart: answering HTTP after $took s"
sleep "$settle"
echo "after the restart: VmRSS $(status_mib VmRSS)"
