#!/usr/bin/env bash
# The closing note's import/export figures: a master file of N records (default 100000: A,
# AAAA, TXT and MX mixed, relative names under one $ORIGIN) imported into an empty rind in one
# POST, then exported whole. Prints the seconds of each request (curl's time_total), the
# VmRSS before the import and the peak (VmHWM) after each step, and checks that the export
# holds N records and that a second import of the same file creates none.
# Needs curl, python3. Not part of CI.
# usage: bench/import-export.sh [N]   (RIND_BIN defaults to target/release/rind-server)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib/single.bash
count=${1:-100000}

python3 bench/lib/gen_zone.py "$count" > "$work/big.zone"
start_rind "$work/data"
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
