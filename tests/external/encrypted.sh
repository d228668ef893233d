#!/usr/bin/env bash
# rind's encrypted listeners against outside clients (docs/reference.md, "Encrypted
# listeners"): kdig +tls (DNS over TLS) and kdig +https / +https-get (DNS over HTTPS, HTTP/2)
# verify the server's certificate against a test CA made here with the openssl CLI; curl checks
# HTTP/1.1, the Cache-Control header and the 4xx answers; openssl s_client sees the
# certificate change on SIGHUP, and stay on a failed reload.
#
# Needs kdig (knot-dnsutils), curl, openssl and python3; .ci/run installs them.
# Usage: tests/external/encrypted.sh   (from anywhere; builds rind-server in debug)
#   KEEP_LOGS=1     keep the work directory (certificates, rind's log)
#   RIND_BIN=path   use this rind-server instead
set -euo pipefail
cd "$(dirname "$0")/../.."

for tool in kdig curl openssl python3; do
    command -v "$tool" >/dev/null || { echo "encrypted.sh: $tool is not installed" >&2; exit 1; }
done

if [ -n "${RIND_BIN:-}" ]; then
    rind=$RIND_BIN
else
    cargo build --quiet -p rind-server
    rind="${CARGO_TARGET_DIR:-target}/debug/rind-server"
fi

source tests/external/common.bash

dns_port=$(free_port)
http_port=$(free_port)
dot_port=$(free_port)
doh_port=$(free_port)

# A test CA and two server certificates for dns.test (and 127.0.0.1) that it signs.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=rind test CA" -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
leaf() { # leaf NAME CN
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$2" \
        -keyout "$work/$1.key" -out "$work/$1.csr" 2>/dev/null
    printf 'subjectAltName=DNS:dns.test,IP:127.0.0.1\n' > "$work/$1.ext"
    openssl x509 -req -in "$work/$1.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" \
        -CAcreateserial -days 2 -extfile "$work/$1.ext" -out "$work/$1.pem" 2>/dev/null
}
leaf first "rind first"
leaf second "rind second"
cp "$work/first.pem" "$work/cert.pem"
cp "$work/first.key" "$work/key.pem"

# A missing key: exit 2 with one line.
set +e
"$rind" --dns-addr "127.0.0.1:$dns_port" --http-addr "127.0.0.1:$http_port" --upstream 127.0.0.1:9 \
    --data-dir "$work/refused" --dot-addr "127.0.0.1:$dot_port" \
    --tls-cert "$work/cert.pem" --tls-key "$work/missing.key" 2> "$work/refused.log"
status=$?
set -e
if [ "$status" = 2 ] && [ "$(wc -l < "$work/refused.log")" = 1 ] && grep -q "missing.key" "$work/refused.log"; then
    pass "a missing key: exit 2, one line ($(cat "$work/refused.log"))"
else
    fail "a missing key: status $status, stderr: $(cat "$work/refused.log")"
fi

"$rind" --dns-addr "127.0.0.1:$dns_port" --http-addr "127.0.0.1:$http_port" --upstream 127.0.0.1:9 \
    --data-dir "$work/rind-data" --dot-addr "127.0.0.1:$dot_port" --doh-addr "127.0.0.1:$doh_port" \
    --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" > "$work/rind.log" 2>&1 &
rind_pid=$!
pids+=("$rind_pid")
for _ in $(seq 100); do
    grep -q listening "$work/rind.log" && break
    sleep 0.1
done
grep -q listening "$work/rind.log" || { echo "rind-server did not start:"; cat "$work/rind.log"; exit 1; }

curl -sS --fail -X POST "http://127.0.0.1:$http_port/api/v1/records" -H 'content-type: application/json' \
    -d '{"name": "host.home.lan", "type": "A", "data": "192.168.1.10", "ttl": 300}' > /dev/null

verify=(+tls-ca="$work/ca.pem" +tls-hostname=dns.test +time=2 +retry=0)
check_answer() { # check_answer WHAT EXPECTED KDIG-ARGS...
    local what=$1 expected=$2
    shift 2
    local got
    got=$(kdig "$@" host.home.lan A +short 2>&1 | tail -1)
    if [ "$got" = "$expected" ]; then pass "$what: $got"; else fail "$what: got '$got', want '$expected'"; fi
}
check_answer "plain UDP" 192.168.1.10 @127.0.0.1 -p "$dns_port"
check_answer "kdig +tls, certificate verified" 192.168.1.10 @127.0.0.1 -p "$dot_port" +tls "${verify[@]}"
check_answer "kdig +https (HTTP/2 POST), certificate verified" 192.168.1.10 @127.0.0.1 -p "$doh_port" +https "${verify[@]}"
check_answer "kdig +https-get" 192.168.1.10 @127.0.0.1 -p "$doh_port" +https-get "${verify[@]}"
if kdig @127.0.0.1 -p "$dot_port" +tls +tls-ca="$work/ca.pem" +tls-hostname=other.test +time=2 +retry=0 \
    host.home.lan A 2>&1 | grep -q 'status: NOERROR'; then
    fail "kdig accepted the certificate for another name (is it verifying at all?)"
else
    pass "kdig refuses the certificate for another name"
fi

# HTTP/1.1 through curl: the answer's TTL as the freshness; HTTP errors for what is not DoH.
query=$(python3 -c '
import base64, struct
q = struct.pack(">HHHHHH", 0, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(l)]) + l for l in [b"host", b"home", b"lan"]) + b"\0" + struct.pack(">HH", 1, 1)
print(base64.urlsafe_b64encode(q).decode().rstrip("="))')
curl_doh() { curl -sS --cacert "$work/ca.pem" --resolve "dns.test:$doh_port:127.0.0.1" "$@"; }
headers=$(curl_doh --http1.1 -D - -o /dev/null "https://dns.test:$doh_port/dns-query?dns=$query")
if grep -qi '^cache-control: max-age=300' <<< "$headers" && grep -q '^HTTP/1.1 200' <<< "$headers"; then
    pass "curl HTTP/1.1 GET: 200 with Cache-Control: max-age=300"
else
    fail "curl HTTP/1.1 GET: $headers"
fi
for case in "404 https://dns.test:$doh_port/" \
    "400 https://dns.test:$doh_port/dns-query?dns=***" \
    "415 -X POST -H content-type:text/plain --data x https://dns.test:$doh_port/dns-query" \
    "405 -X DELETE https://dns.test:$doh_port/dns-query"; do
    want=${case%% *}
    # shellcheck disable=SC2086 # the case holds curl arguments
    got=$(curl_doh -o /dev/null -w '%{http_code}' ${case#* })
    if [ "$got" = "$want" ]; then pass "curl ${case#* }: $got"; else fail "curl ${case#* }: $got, want $want"; fi
done

subject() { # the CN the DoT listener presents now
    openssl s_client -connect "127.0.0.1:$dot_port" -servername dns.test -alpn dot </dev/null 2>/dev/null \
        | openssl x509 -noout -subject 2>/dev/null | sed 's/.*CN *= *//'
}
log_count() { grep -c "$1" "$work/rind.log" || true; }
wait_log() { # wait_log PATTERN COUNT-BEFORE: until one more line matches (5 s at most)
    for _ in $(seq 50); do
        [ "$(log_count "$1")" -gt "$2" ] && return 0
        sleep 0.1
    done
    return 1
}

[ "$(subject)" = "rind first" ] && pass "DoT presents the first certificate" || fail "DoT presents '$(subject)'"
cp "$work/second.pem" "$work/cert.pem"
cp "$work/second.key" "$work/key.pem"
before=$(log_count "reloaded")
kill -HUP "$rind_pid"
if wait_log "reloaded" "$before" && [ "$(subject)" = "rind second" ]; then
    pass "SIGHUP: new connections get the second certificate"
else
    fail "SIGHUP: DoT presents '$(subject)'"
fi
check_answer "plain UDP after the reload" 192.168.1.10 @127.0.0.1 -p "$dns_port"
check_answer "kdig +tls after the reload" 192.168.1.10 @127.0.0.1 -p "$dot_port" +tls "${verify[@]}"

echo "not a certificate" > "$work/cert.pem"
before=$(log_count "reload failed")
kill -HUP "$rind_pid"
if wait_log "reload failed" "$before" && [ "$(subject)" = "rind second" ]; then
    pass "a broken file: the reload fails, is logged, and the second certificate stays"
else
    fail "a broken file: DoT presents '$(subject)'; log: $(tail -3 "$work/rind.log")"
fi
check_answer "kdig +https after the failed reload" 192.168.1.10 @127.0.0.1 -p "$doh_port" +https "${verify[@]}"
kill -0 "$rind_pid" 2>/dev/null && pass "rind-server still running" || fail "rind-server died"

if [ "$failures" -gt 0 ]; then
    echo "encrypted.sh: $failures failed; rind log tail:"
    tail -20 "$work/rind.log"
    exit 1
fi
echo "encrypted.sh: all passed"
