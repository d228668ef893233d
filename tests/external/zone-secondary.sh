#!/usr/bin/env bash
# rind as a secondary of Knot: Knot serves a zone (many record types, a wildcard, TSIG on
# transfers and NOTIFY); rind-server is made its secondary over the API and must answer
# every name exactly as Knot does (kdig, answer sections compared), then follow changes
# made on Knot (knotc) by NOTIFY + IXFR, keep answering after a restart with Knot stopped,
# and refuse API writes under the zone with 409.
#
# Needs knotd, knotc, kdig (knot, knot-dnsutils), curl and python3; .ci/run installs them.
# Usage: tests/external/zone-secondary.sh   (from anywhere; builds rind-server in debug)
set -euo pipefail
cd "$(dirname "$0")/../.."

for tool in knotd knotc kdig curl python3; do
    command -v "$tool" >/dev/null || { echo "zone-secondary.sh: $tool is not installed" >&2; exit 1; }
done

cargo build --quiet -p rind-server
rind="${CARGO_TARGET_DIR:-target}/debug/rind-server"

source tests/external/common.bash

knot_port=$(free_port)
rind_port=$(free_port)
http_port=$(free_port)
secret="c2Vjb25kYXJ5LXRlc3Qta2V5LTIwMjY="


mkdir -p "$work/knot/db"
cat > "$work/knot/lab.test.zone" <<'ZONE'
$ORIGIN lab.test.
$TTL 120
@         SOA ns1 hostmaster 100 3600 600 86400 30
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
alias     CNAME www
host      SSHFP 1 1 0123456789abcdef0123456789abcdef01234567
deep.a.b  TXT "below empty non-terminals"
ZONE
cat > "$work/knot/knot.conf" <<CONF
server:
    rundir: "$work/knot"
    listen: 127.0.0.1@$knot_port
log:
  - target: stderr
    any: info
database:
    storage: "$work/knot/db"
key:
  - id: xfr
    algorithm: hmac-sha256
    secret: $secret
remote:
  - id: rind
    address: 127.0.0.1@$rind_port
    key: xfr
acl:
  - id: to_rind
    address: 127.0.0.1
    key: xfr
    action: transfer
template:
  - id: default
    storage: "$work/knot"
zone:
  - domain: lab.test
    file: "lab.test.zone"
    notify: rind
    acl: to_rind
    zonefile-sync: -1
    journal-content: changes
CONF
knotd -c "$work/knot/knot.conf" > "$work/knot.log" 2>&1 &
knot_pid=$!
pids+=("$knot_pid")
for _ in $(seq 150); do
    kdig @127.0.0.1 -p "$knot_port" +short +time=1 +retry=0 lab.test SOA 2>/dev/null | grep -q hostmaster && break
    sleep 0.1
done
knotc() { command knotc -s "$work/knot/knot.sock" "$@"; }

start_rind() {
    "$rind" --dns-addr "127.0.0.1:$rind_port" --http-addr "127.0.0.1:$http_port" \
        --upstream 127.0.0.1:9 --data-dir "$work/rind-data" \
        --tsig-key "xfr:hmac-sha256:$secret" > "$work/rind.log" 2>&1 &
    rind_pid=$!
    pids+=("$rind_pid")
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$http_port/healthz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "rind-server did not start:"; cat "$work/rind.log"; exit 1
}
start_rind

created=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$http_port/api/v1/zones" \
    -d "{\"name\": \"lab.test\", \"primary\": \"127.0.0.1:$knot_port\", \"tsig\": \"xfr\"}")
[ "$created" = 201 ] && pass "secondary zone created (201)" || fail "zone create answered $created"

answer() { # port name type → the answer section, sorted, TTLs included
    kdig @127.0.0.1 -p "$1" +time=2 +retry=1 +noall +answer "$2" "$3" 2>/dev/null | sort
}
status() { # port name type → rcode and flags
    kdig @127.0.0.1 -p "$1" +time=2 +retry=1 "$2" "$3" 2>/dev/null | grep -oE 'status: [A-Z]+|Flags: [a-z ]+' | tr '\n' ' '
}

# Waits (at most 10 s) for rind to answer `name type` as Knot does.
converges() {
    for _ in $(seq 100); do
        [ -n "$(answer "$knot_port" "$1" "$2")" ] && [ "$(answer "$rind_port" "$1" "$2")" = "$(answer "$knot_port" "$1" "$2")" ] && return 0
        sleep 0.1
    done
    return 1
}
converges www.lab.test A && pass "first transfer (AXFR) within 10 s" || fail "rind never answered www.lab.test A as Knot does"

check_same() { # label
    for q in "www.lab.test A" "www.lab.test AAAA" "lab.test TXT" "lab.test MX" "lab.test CAA" \
        "_sip._tcp.lab.test SRV" "x.wild.lab.test A" "alias.lab.test A" "host.lab.test SSHFP" \
        "lab.test NS" "lab.test SOA" "deep.a.b.lab.test TXT"; do
        set -- $q
        k=$(answer "$knot_port" "$1" "$2"); r=$(answer "$rind_port" "$1" "$2")
        if [ -n "$k" ] && [ "$k" = "$r" ]; then pass "$label: $1 $2 as Knot answers"; else fail "$label: $1 $2: Knot [$k] rind [$r]"; fi
    done
    for q in "nope.lab.test A" "www.lab.test MX" "a.b.lab.test A"; do
        set -- $q
        k=$(status "$knot_port" "$1" "$2"); r=$(status "$rind_port" "$1" "$2")
        kr=${k%% Flags*}; rr=${r%% Flags*}
        if [ "$kr" = "$rr" ] && [[ "$r" == *" aa"* ]]; then pass "$label: $1 $2 $rr with AA"; else fail "$label: $1 $2: Knot [$k] rind [$r]"; fi
    done
}
label="after AXFR"; check_same

# A change on Knot reaches rind by NOTIFY and IXFR (rind's refresh timer is an hour away).
knotc zone-begin lab.test >/dev/null
knotc zone-set lab.test new 120 A 192.0.2.77 >/dev/null
knotc zone-unset lab.test mail A >/dev/null
knotc zone-commit lab.test >/dev/null
converges new.lab.test A && pass "a record added on Knot is answered by rind" || fail "new.lab.test never reached rind"
for _ in $(seq 100); do
    [ -z "$(answer "$rind_port" mail.lab.test A)" ] && break
    sleep 0.1
done
[ -z "$(answer "$rind_port" mail.lab.test A)" ] && pass "a record removed on Knot is gone from rind" || fail "mail.lab.test A still answered"
grep -q 'kind="IXFR"' "$work/rind.log" && pass "the change came by IXFR" || fail "no IXFR in rind's log"

code=$(curl -s -o "$work/409.json" -w '%{http_code}' -X POST "http://127.0.0.1:$http_port/api/v1/records" \
    -d '{"name": "x.lab.test", "type": "A", "data": "10.0.0.1"}')
[ "$code" = 409 ] && grep -q "secondary of" "$work/409.json" && pass "API write under the zone: 409" || fail "API write under the zone answered $code: $(cat "$work/409.json")"

# Knot goes away; rind answers from its store after a restart.
kdig @127.0.0.1 -p "$knot_port" +noall +answer www.lab.test A | sort > "$work/www.before"
kill "$knot_pid"; wait "$knot_pid" 2>/dev/null || true
kill "$rind_pid"; wait "$rind_pid" 2>/dev/null || true
start_rind
r=$(answer "$rind_port" www.lab.test A)
[ -n "$r" ] && [ "$r" = "$(cat "$work/www.before")" ] && pass "after a restart with Knot down: www.lab.test A" || fail "after restart: [$r]"
r=$(answer "$rind_port" new.lab.test A)
[ -n "$r" ] && pass "after a restart with Knot down: the IXFR'd record" || fail "after restart: new.lab.test missing"

if [ "$failures" -gt 0 ]; then
    echo "zone-secondary.sh: $failures check(s) failed"; echo "--- rind log"; tail -30 "$work/rind.log"; echo "--- knot log"; tail -30 "$work/knot.log"
    exit 1
fi
echo "zone-secondary.sh: all checks passed"
