#!/usr/bin/env bash
# Knot as a secondary of rind (docs/reference.md, "Zones and zone transfer"): rind is the primary
# of home.lan (TSIG key xfr, NOTIFY to Knot); Knot bootstraps it by AXFR, then each write on
# rind must reach Knot within 1 s through NOTIFY + IXFR (timed, median and max printed).
# kdig checks that rind's transfers are refused unsigned and verify signed. Then a large zone:
# Knot is killed with -9 while it is taking the zone by AXFR, restarted, and must converge.
#
# Needs knotd, kdig (knot, knot-dnsutils) and python3; .ci/run installs them.
# Usage: tests/external/zones.sh   (from anywhere; builds rind-server in debug)
#   ZONES_BENCH=100        also time 100 writes (>= 1 s apart), the closing note's figure
#   ZONES_BIG=N            TXT records of about 1.5 KB in the large zone (default 1000)
#   KEEP_LOGS=1           keep the work directory (logs, Knot's database) for a look
#   RIND_BIN=path          use this rind-server (e.g. target/release/rind-server) instead
set -euo pipefail
cd "$(dirname "$0")/../.."

for tool in knotd kdig python3; do
    command -v "$tool" >/dev/null || { echo "zones.sh: $tool is not installed" >&2; exit 1; }
done

if [ -n "${RIND_BIN:-}" ]; then
    rind=$RIND_BIN
else
    cargo build --quiet -p rind-server
    rind="${CARGO_TARGET_DIR:-target}/debug/rind-server"
fi
zt="python3 tests/external/zt.py"
big_count=${ZONES_BIG:-1000}
secret=c2VjcmV0c2VjcmV0 # "secretsecret"

stop_signal=KILL
source tests/external/common.bash

rind_port=$(free_port)
http_port=$(free_port)
knot_port=$(free_port)
slow_port=$(free_port)
api="http://127.0.0.1:$http_port/api/v1"


# Polls (every 0.1 s, at most $1 s) until the command after it succeeds.
wait_for() {
    local limit=$1
    shift
    local tries=$((limit * 10))
    for _ in $(seq "$tries"); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}

# The SOA serial a server answers for a zone ("" when none).
serial_at() { kdig @127.0.0.1 -p "$1" +short +time=1 +retry=0 "$2" SOA 2>/dev/null | awk '{print $3}'; }
rind_serial() { curl -sf "$api/zones/$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["serial"])'; }
same_serial() { [ -n "$(serial_at "$knot_port" "$1")" ] && [ "$(serial_at "$knot_port" "$1")" = "$(rind_serial "$1")" ]; }

post() {
    local code
    code=$(curl -s -o "$work/post.out" -w '%{http_code}' -H 'content-type: application/json' -d "$2" "$api/$1")
    [ "$code" = 201 ] || { echo "POST $1 $2: HTTP $code $(cat "$work/post.out")"; exit 1; }
}

# --- rind: the primary.
"$rind" --dns-addr "127.0.0.1:$rind_port" --http-addr "127.0.0.1:$http_port" \
    --upstream 127.0.0.1:9 --data-dir "$work/rind-data" \
    --tsig-key "xfr:hmac-sha256:$secret" > "$work/rind.log" 2>&1 &
rind_pid=$!
pids+=("$rind_pid")
wait_for 30 curl -sf "http://127.0.0.1:$http_port/healthz" || { echo "rind-server did not start:"; cat "$work/rind.log"; exit 1; }

zone_body() { echo "{\"name\": \"$1\", \"allow_transfer\": [\"127.0.0.1\"], \"notify\": [\"127.0.0.1:$knot_port\"], \"tsig\": \"xfr\"}"; }
post zones "$(zone_body home.lan)"
post records '{"name": "nas.home.lan", "type": "A", "data": "192.168.1.10"}'
post records '{"name": "nas.home.lan", "type": "AAAA", "data": "fd00::10"}'
post records '{"name": "home.lan", "type": "MX", "ttl": 3600, "data": "10 nas.home.lan"}'
post records '{"name": "www.home.lan", "type": "CNAME", "data": "nas.home.lan"}'
post records '{"name": "home.lan", "type": "TXT", "data": "\"v=spf1 -all\""}'

# --- Transfers straight from rind, checked by kdig (Knot's own TSIG and parser).
# (kdig exits 1 on an error reply: capture first, pipefail would hide grep's verdict.)
out=$(kdig @127.0.0.1 -p "$rind_port" +time=3 +retry=0 home.lan AXFR 2>&1 || true)
if grep -q "replied with error 'REFUSED'" <<< "$out"; then
    pass "unsigned AXFR of a TSIG zone is REFUSED"
else
    fail "unsigned AXFR of a TSIG zone was not refused"
fi
# kdig checks the TSIG of every message and says ERROR or WARNING when one does not verify.
if kdig @127.0.0.1 -p "$rind_port" +time=3 +retry=0 -y "hmac-sha256:xfr:$secret" home.lan AXFR > "$work/axfr.txt" 2>&1 \
    && ! grep -q '^;; \(ERROR\|WARNING\)' "$work/axfr.txt" && grep -q 'TSIG.*NOERROR' "$work/axfr.txt" \
    && [ "$(grep -c 'IN[[:space:]]SOA' "$work/axfr.txt")" = 2 ] && grep -q 'nas.home.lan.*192.168.1.10' "$work/axfr.txt"; then
    pass "signed AXFR verified by kdig ($(grep -o 'Received.*' "$work/axfr.txt"))"
else
    fail "signed AXFR:"; cat "$work/axfr.txt"
fi
out=$(kdig @127.0.0.1 -p "$rind_port" +time=3 +retry=0 -y "hmac-sha256:xfr:d3Jvbmd3cm9uZw==" home.lan AXFR 2>&1 || true)
if grep -q "replied with error 'BADSIG'" <<< "$out"; then
    pass "AXFR with a wrong secret gets BADSIG"
else
    fail "AXFR with a wrong secret was not refused"
fi

# --- Knot: the secondary, with NOTIFY from rind allowed (signed with xfr).
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
key:
  - id: xfr
    algorithm: hmac-sha256
    secret: $secret
remote:
  - id: rind
    address: 127.0.0.1@$rind_port
    key: xfr
  # rind through a slow link (zt.py proxy), so that Knot can be killed in the middle of an AXFR.
  - id: rind_slow
    address: 127.0.0.1@$slow_port
    key: xfr
acl:
  - id: from_rind
    address: 127.0.0.1
    key: xfr
    action: notify
  - id: local_transfer
    address: 127.0.0.1
    action: transfer
template:
  - id: default
    storage: $work/knot
    master: rind
    acl: [from_rind, local_transfer]
    zonefile-sync: -1
    zonefile-load: none
    journal-content: all
zone:
  - domain: home.lan
  - domain: big.lan
    master: rind_slow
CONF
# 512 KB/s from rind to Knot: the 1.5 MB of big.lan take about 3 s.
$zt proxy "$slow_port" "$rind_port" 524288 &
pids+=($!)
start_knot() {
    knotd -c "$work/knot/knot.conf" >> "$work/knot.log" 2>&1 &
    knot_pid=$!
    pids+=("$knot_pid")
}
start_knot

if wait_for 15 same_serial home.lan; then
    pass "Knot took home.lan from rind (serial $(serial_at "$knot_port" home.lan))"
else
    fail "Knot did not take home.lan: knot $(serial_at "$knot_port" home.lan), rind $(rind_serial home.lan)"
    tail -20 "$work/knot.log"
fi
for q in "nas.home.lan A 192.168.1.10" "nas.home.lan AAAA fd00::10" "home.lan MX 10 nas.home.lan." \
         "www.home.lan CNAME nas.home.lan." "home.lan NS ns.home.lan."; do
    set -- $q
    got=$(kdig @127.0.0.1 -p "$knot_port" +short +time=1 +retry=0 "$1" "$2" | tr '\n' ' ' | sed 's/ $//')
    want="${*:3}"
    [ "$got" = "$want" ] && pass "Knot answers $1 $2 $want" || fail "Knot answers $1 $2 '$got', want '$want'"
done

# --- Writes a second apart, each timed from the 201 to Knot's new answer (NOTIFY + IXFR).
if $zt converge "127.0.0.1:$http_port" "127.0.0.1:$knot_port" home.lan 5 1.0 > "$work/converge.txt"; then
    cat "$work/converge.txt"
    max=$(awk '/^median/ {for (i = 1; i < NF; i++) if ($i == "max") print $(i + 1)}' "$work/converge.txt")
    if python3 -c "import sys; sys.exit(0 if float('$max') <= 1000 else 1)"; then
        pass "5 writes reached Knot within 1 s each"
    else
        fail "a write took $max ms to reach Knot"
    fi
else
    cat "$work/converge.txt"; fail "writes did not reach Knot"
fi
if grep -q 'IXFR, incoming.*finished' "$work/knot.log"; then
    pass "Knot used IXFR for the changes"
else
    fail "Knot never finished an IXFR:"; grep -i 'xfr\|refresh' "$work/knot.log" | tail -10
fi

if [ -n "${ZONES_BENCH:-}" ]; then
    echo "== benchmark: $ZONES_BENCH writes >= 1 s apart, 201 on rind -> new answer on Knot"
    $zt converge "127.0.0.1:$http_port" "127.0.0.1:$knot_port" home.lan "$ZONES_BENCH" 1.0 > "$work/bench.txt"
    sort -t: -k2 -g "$work/bench.txt" | grep '^write' | awk '{print $3}' | sort -g | tail -5 | tr '\n' ' ' | sed 's/^/slowest 5 (ms): /'; echo
    tail -1 "$work/bench.txt"
fi

# --- A large zone (about 1.5 KB a record, so few writes make megabytes to transfer): Knot is
# killed with -9 in the middle of its AXFR, restarted, and must end up with every record.
post zones "$(zone_body big.lan)"
started=$(date +%s.%N)
$zt filltxt "127.0.0.1:$http_port" big.lan "$big_count"
echo "filled big.lan with $big_count records in $(python3 -c "print(round($(date +%s.%N) - $started, 1))") s"
wait_for 60 same_serial big.lan || fail "Knot did not catch up with the filled big.lan"
# A fresh Knot database makes Knot bootstrap big.lan by AXFR (from its serial it would ask
# for a tiny IXFR); Knot's log says when the AXFR starts: kill it half a second later, a
# few hundred KB into the 1.5 MB. Should the transfer still win the race, it is tried again.
killed_mid=0
for attempt in 1 2 3; do
    kill -9 "$knot_pid" 2>/dev/null || true; wait "$knot_pid" 2>/dev/null || true
    rm -rf "$work/knot/db" && mkdir -p "$work/knot/db"
    : > "$work/knot.log"
    start_knot
    for _ in $(seq 2000); do
        grep -q 'big.lan.*AXFR, incoming.*started' "$work/knot.log" && break
        sleep 0.005
    done
    sleep 0.5
    kill -9 "$knot_pid" 2>/dev/null || true; wait "$knot_pid" 2>/dev/null || true
    if grep -q 'big.lan.*AXFR, incoming.*started' "$work/knot.log" \
        && ! grep -q 'big.lan.*AXFR, incoming.*finished' "$work/knot.log"; then
        killed_mid=1
        break
    fi
    echo "attempt $attempt: the AXFR was over before the kill; again"
done
[ "$killed_mid" = 1 ] && pass "Knot killed -9 in the middle of its AXFR of big.lan" \
    || fail "could not kill Knot in the middle of the AXFR"
start_knot
if wait_for 60 same_serial big.lan; then
    pass "restarted Knot converged on big.lan (serial $(serial_at "$knot_port" big.lan))"
else
    fail "restarted Knot did not converge: knot $(serial_at "$knot_port" big.lan), rind $(rind_serial big.lan)"
fi
# Every record: Knot's own AXFR of the zone, against what was written.
transferred=$(kdig @127.0.0.1 -p "$knot_port" +time=5 big.lan AXFR | grep -c 'IN[[:space:]]TXT' || true)
[ "$transferred" = "$big_count" ] && pass "Knot holds all $big_count records of big.lan" \
    || fail "Knot holds $transferred TXT records of big.lan, want $big_count"
grep 'big.lan.*AXFR, incoming.*finished' "$work/knot.log" | tail -1 || true
# Changes after the restart still flow.
post records '{"name": "late.big.lan", "type": "A", "data": "192.168.9.9"}'
if wait_for 5 bash -c "[ \"\$($zt ask 127.0.0.1:$knot_port late.big.lan)\" = 192.168.9.9 ]"; then
    pass "a write after the restart reached Knot"
else
    fail "a write after the restart did not reach Knot"
fi
echo "rind peak RSS: $(awk '/VmHWM/ {print $2, $3}' "/proc/$rind_pid/status")"

if [ "$failures" -gt 0 ]; then
    echo "zones.sh: $failures failed; rind log tail:"
    tail -20 "$work/rind.log"
    echo "knot log tail:"
    tail -20 "$work/knot.log"
    exit 1
fi
echo "zones.sh: all passed"
