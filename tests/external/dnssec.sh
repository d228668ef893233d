#!/usr/bin/env bash
# DNSSEC through rind, checked by real programs: Knot signs two zones (NSEC and NSEC3) and
# serves them on loopback; rind-server forwards to it; delv, with the zones' keys as trust
# anchors, must say "fully validated" through rind for every question exactly as it does
# straight against Knot: positive answers of several types, wildcards, a CNAME across zones,
# NXDOMAIN and NODATA; first from upstream, then from rind's cache, then from its disk after
# a restart with Knot frozen.
# kdig checks the DO echo and that RRSIGs reach DO=1 clients only.
#
# Needs knotd, kdig (knot, knot-dnsutils), delv (dnsutils) and python3; .ci/run installs them.
# Usage: tests/external/dnssec.sh   (from anywhere; builds rind-server in debug)
set -euo pipefail
cd "$(dirname "$0")/../.."

for tool in knotd kdig delv python3; do
    command -v "$tool" >/dev/null || { echo "dnssec.sh: $tool is not installed" >&2; exit 1; }
done

cargo build --quiet -p rind-server
rind="${CARGO_TARGET_DIR:-target}/debug/rind-server"

source tests/external/common.bash

knot_port=$(free_port)
rind_port=$(free_port)
http_port=$(free_port)


# --- Knot: two zones, signed automatically (ECDSA P-256; NSEC, and NSEC3 for the second).
mkdir -p "$work/knot/db"
for zone in example.test nsec3.test; do
    cat > "$work/knot/$zone.zone" <<ZONE
\$ORIGIN $zone.
\$TTL 300
@         SOA ns1 hostmaster 1 3600 600 86400 600
@         NS  ns1
ns1       A   127.0.0.1
www       A   192.0.2.10
www       AAAA 2001:db8::10
@         TXT "v=spf1 -all" "second string"
@         MX  10 mail
mail      A   192.0.2.25
@         CAA 0 issue "letsencrypt.org"
_sip._tcp SRV 10 60 5060 sip
sip       A   192.0.2.30
*.wild    A   192.0.2.99
alias     CNAME www.nsec3.test.
ZONE
done
cat > "$work/knot/knot.conf" <<CONF
server:
    listen: 127.0.0.1@$knot_port
    rundir: $work/knot
log:
  - target: stderr
    any: warning
database:
    storage: $work/knot/db
policy:
  - id: nsec3
    nsec3: on
template:
  - id: default
    storage: $work/knot
    dnssec-signing: on
    zonefile-sync: -1
zone:
  - domain: example.test
  - domain: nsec3.test
    dnssec-policy: nsec3
CONF
knotd -c "$work/knot/knot.conf" > "$work/knot.log" 2>&1 &
knot_pid=$!
pids+=("$knot_pid")

# Waits (at most 15 s) until both zones answer with a DNSKEY.
for _ in $(seq 150); do
    ready=1
    for zone in example.test nsec3.test; do
        kdig @127.0.0.1 -p "$knot_port" +short +time=1 +retry=0 "$zone" DNSKEY 2>/dev/null | grep -q '^257 ' || ready=0
    done
    [ "$ready" = 1 ] && break
    sleep 0.1
done
[ "$ready" = 1 ] || { echo "Knot did not serve signed zones:"; cat "$work/knot.log"; exit 1; }

# Trust anchors: each zone's key-signing key, as delv reads them.
{
    echo "trust-anchors {"
    for zone in example.test nsec3.test; do
        kdig @127.0.0.1 -p "$knot_port" +short "$zone" DNSKEY | awk -v z="$zone" '$1 == 257 {
            key = ""; for (i = 4; i <= NF; i++) key = key $i
            printf "  %s. static-key %s %s %s \"%s\";\n", z, $1, $2, $3, key }'
    done
    echo "};"
} > "$work/anchors.conf"

start_rind() {
    "$rind" --dns-addr "127.0.0.1:$rind_port" --http-addr "127.0.0.1:$http_port" \
        --upstream "127.0.0.1:$knot_port" --data-dir "$work/rind-data" > "$work/rind.log" 2>&1 &
    rind_pid=$!
    pids+=("$rind_pid")
    for _ in $(seq 100); do
        kdig @127.0.0.1 -p "$rind_port" +time=1 +retry=0 localhost A 2>/dev/null | grep -q 'status: NOERROR' && return 0
        sleep 0.1
    done
    echo "rind-server did not start:"; cat "$work/rind.log"; exit 1
}

stop_rind() {
    kill "$rind_pid"
    wait "$rind_pid" 2>/dev/null || true
}

# "name type": positive answers of several types, NXDOMAIN, NODATA, the keys themselves, a
# wildcard expansion (its NSEC/NSEC3 proof rides in the authority section of a positive
# answer) and a CNAME into the other zone.
# The SOA MINIMUM of 600 keeps negative answers cached past the restart below.
questions=()
for zone in example.test nsec3.test; do
    questions+=("www.$zone A" "www.$zone AAAA" "$zone TXT" "$zone MX" "$zone CAA"
        "_sip._tcp.$zone SRV" "$zone DNSKEY" "nope.$zone A" "www.$zone TXT"
        "x.wild.$zone A" "alias.$zone A")
done

validate() { # port zone name type
    delv @127.0.0.1 -p "$1" -a "$work/anchors.conf" +root="$2" "$3" "$4" 2>&1 | grep -c 'fully validated' || true
}

check_all() { # label [frozen: Knot cannot answer, so only rind is asked]
    for q in "${questions[@]}"; do
        read -r name type <<< "$q"
        case "$name" in *nsec3.test) zone=nsec3.test ;; *) zone=example.test ;; esac
        if [ "${2:-}" = frozen ]; then
            direct=1 # validated against Knot in the first pass
        else
            direct=$(validate "$knot_port" "$zone" "$name" "$type")
        fi
        via=$(validate "$rind_port" "$zone" "$name" "$type")
        if [ "$direct" -ge 1 ] && [ "$via" -ge 1 ]; then
            pass "$1: delv fully validates $name $type through rind, as against Knot"
        else
            fail "$1: $name $type: delv against Knot: $direct validated, through rind: $via"
            delv @127.0.0.1 -p "$rind_port" -a "$work/anchors.conf" +root="$zone" "$name" "$type" 2>&1 | sed 's/^/    /' || true
        fi
    done
}

start_rind
check_all "from upstream"
check_all "from the cache"

# DO echo, and RRSIGs for DO=1 clients only (cached answers here).
out=$(kdig @127.0.0.1 -p "$rind_port" +dnssec www.example.test A)
if grep -q 'flags: do;' <<< "$out" && grep -q 'RRSIG' <<< "$out"; then
    pass "kdig +dnssec: DO echoed and the RRSIG kept"
else
    fail "kdig +dnssec: $out"
fi
out=$(kdig @127.0.0.1 -p "$rind_port" +edns www.example.test A)
if ! grep -q 'flags: do;' <<< "$out" && ! grep -q 'RRSIG' <<< "$out" && grep -q '192.0.2.10' <<< "$out"; then
    pass "kdig +edns without DO: no DO, no RRSIG, the A record"
else
    fail "kdig +edns: $out"
fi
out=$(kdig @127.0.0.1 -p "$rind_port" +dnssec nope.nsec3.test A)
if grep -q 'NXDOMAIN' <<< "$out" && grep -q 'NSEC3' <<< "$out" && grep -q 'flags: do;' <<< "$out"; then
    pass "kdig +dnssec NXDOMAIN: the NSEC3 proof kept"
else
    fail "kdig +dnssec NXDOMAIN: $out"
fi

# Restart with Knot frozen: every answer must now come from rind's disk cache.
stop_rind
kill -STOP "$knot_pid"
start_rind
check_all "after a restart, upstream frozen" frozen
kill -CONT "$knot_pid"
stop_rind

if [ "$failures" -gt 0 ]; then
    echo "dnssec.sh: $failures check(s) failed"
    exit 1
fi
echo "dnssec.sh: all checks passed"
