#!/usr/bin/env bash
# The closing note's AXFR figure: a zone of N A records (default 100000) on rind, taken whole
# by a fresh Knot secondary. Prints the seconds Knot reports for the AXFR, the wall time from
# Knot's start to Knot answering rind's serial, and rind's peak RSS (VmHWM) before and after
# the transfer. rind is restarted after the fill, so the peak is loading + serving the zone,
# not the API writes.
# Needs knotd, kdig, curl, python3. Not part of CI.
# usage: bench/zones-axfr.sh [N]   (RIND_BIN defaults to target/release/rind-server)
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-100000}
source bench/lib/single.bash
zt="python3 tests/external/zt.py"
rind_port=$(free_port); http_port=$(free_port); knot_port=$(free_port)
api="http://127.0.0.1:$http_port/api/v1"
# rind on fixed ports, so Knot can be pointed at it across restarts.
start_primary() {
    "$rind" --dns-addr "127.0.0.1:$rind_port" --http-addr "127.0.0.1:$http_port" --upstream 127.0.0.1:9 \
        --data-dir "$work/rind-data" --log-level warn > "$work/rind.log" 2>&1 &
    rind_pid=$!
    pids+=("$rind_pid")
    for _ in $(seq 600); do curl -sf "http://127.0.0.1:$http_port/healthz" >/dev/null && return 0; sleep 0.1; done
    echo "rind did not start"; cat "$work/rind.log"; exit 1
}
hwm() { awk '/VmHWM/ {print $2, $3}' "/proc/$rind_pid/status"; }

start_primary
curl -sf -H 'content-type: application/json' -d '{"name": "big.lan", "allow_transfer": ["127.0.0.1"]}' "$api/zones" >/dev/null
t0=$(date +%s.%N)
ZT_THREADS=${ZT_THREADS:-32} $zt fill "127.0.0.1:$http_port" big.lan "$count"
echo "fill: $count records in $(python3 -c "print(round($(date +%s.%N) - $t0, 1))") s"
serial=$(curl -sf "$api/zones/big.lan" | python3 -c 'import json,sys; print(json.load(sys.stdin)["serial"])')
kill "$rind_pid"; wait "$rind_pid" 2>/dev/null || true
start_primary
echo "rind restarted: VmHWM $(hwm) before the transfer"

mkdir -p "$work/knot/db"
cat > "$work/knot/knot.conf" <<CONF
server:
    listen: 127.0.0.1@$knot_port
    rundir: $work/knot
log:
  - target: stderr
    any: info
database:
    storage: $work/knot/db
remote:
  - id: rind
    address: 127.0.0.1@$rind_port
acl:
  - id: notify_from_rind
    address: 127.0.0.1
    action: notify
template:
  - id: default
    storage: $work/knot
    master: rind
    acl: notify_from_rind
    zonefile-sync: -1
    zonefile-load: none
    journal-content: all
zone:
  - domain: big.lan
CONF
t0=$(date +%s.%N)
knotd -c "$work/knot/knot.conf" > "$work/knot.log" 2>&1 &
pids+=($!)
for _ in $(seq 6000); do
    [ "$(kdig @127.0.0.1 -p "$knot_port" +short +time=1 +retry=0 big.lan SOA 2>/dev/null | awk '{print $3}')" = "$serial" ] && break
    sleep 0.05
done
echo "knot start -> answering serial $serial: $(python3 -c "print(round($(date +%s.%N) - $t0, 2))") s"
grep 'AXFR, incoming.*finished' "$work/knot.log" || { echo "no finished AXFR:"; tail "$work/knot.log"; exit 1; }
echo "rind VmHWM after the transfer: $(hwm)"
got=$(kdig @127.0.0.1 -p "$knot_port" +short +time=1 +retry=0 "h$((count - 1)).big.lan" A)
echo "knot answers h$((count - 1)).big.lan A: $got"
# Convergence with the big zone in place (NOTIFY on from now): 20 writes a second apart.
curl -sf -X PUT -H 'content-type: application/json' \
    -d "{\"allow_transfer\": [\"127.0.0.1\"], \"notify\": [\"127.0.0.1:$knot_port\"]}" "$api/zones/big.lan" >/dev/null
sleep 1
echo "convergence with $count records in the zone:"
$zt converge "127.0.0.1:$http_port" "127.0.0.1:$knot_port" big.lan 20 1.0 | tail -1
