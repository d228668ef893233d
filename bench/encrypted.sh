#!/usr/bin/env bash
# Encrypted DNS benchmark on loopback (issues 15 and 18): rind against Unbound and dnsdist,
# each peer started in turn from an empty cache, all of them forwarding over DNS over TLS to
# the SAME local DoT upstream (a separate Unbound with a TLS port and a wildcard-like
# "redirect" local zone: every name under bench.example. gets A 203.0.113.1). The script makes
# its own test CA and certificates with openssl; the peers check the upstream against that CA
# (rind --upstream-ca, Unbound tls-cert-bundle, dnsdist caStore) and serve DoT (to dnsperf)
# and DoH (to h2load) with a certificate from the same CA.
#
# usage: bench/encrypted.sh [options] [peer ...]
#   peers            : rind unbound dnsdist (default: rind, plus unbound and dnsdist when installed)
#                      rind runs target/release/rind-server (or RIND_BIN=/path/rind-server)
# options:
#   --rounds N        rounds over all peers, interleaved (default 1)
#   --scenarios LIST  comma list of miss,dot,doh (default miss,dot,doh)
#                       miss: unique names over plain UDP to the peer, every one a cache miss
#                             that goes to the DoT upstream (issue 15)
#                       dot : the 100 warm names, saturated, dnsperf -m dot (issue 18)
#                       doh : cache hits over DoH with h2load (HTTP/2), POST /dns-query
#                             (issue 18); dnsperf 2.10's DoH mode drops answers that arrive
#                             together in one read, so it is not used for DoH
#   --secs S          duration of each scenario (default 10)
#   --clients C       dnsperf -c and h2load -c (default 8; over DoT/DoH, one connection each)
#   --outstanding Q   dnsperf -q (default 200)
#   --streams M       h2load -m, concurrent HTTP/2 streams per DoH connection (default 25)
#   --miss-names N    unique names in the miss file (default 1000000)
#   --base-port P     first of the loopback ports used (default 5410; P..P+49)
#   --doh-method M    POST (one body, h000.bench.example A, for every request) or GET (the
#                     100 hit names in turn, ?dns=<base64url>) (default POST)
#   --out DIR         results directory (default bench/results/encrypted-<UTC timestamp>)
#   -h, --help        this text
#
# Per peer and scenario it records the QPS (dnsperf's queries or h2load's requests per
# second), the answers lost or failed, the peer's CPU time (all of its processes, from /proc)
# and so the CPU per query, the upstream's CPU time, and for rind the TLS handshakes to the
# upstream (rind_upstream_connections_total from /metrics) per 10,000 queries. Before the DoH
# load, one POST with curl must come back as a DNS answer. Results: DIR/results.jsonl,
# dnsperf/h2load output in DIR/raw/, and a table at the end with each peer's figures as a
# ratio of rind's against it (compare within one run only). A run that lost or failed answers
# (dnsperf: over 1% lost or a non-NOERROR answer; h2load: any request failed, errored, timed
# out or not 2xx; or the curl check failed) is left out of the medians; with no good run a
# figure is "—" and the notes under the table say why.
#
# Everything binds to 127.0.0.1 only. Every daemon this script starts is started with setsid
# (PID == process-group id), and is stopped by that PID at the end of its run and again by an
# EXIT trap; nothing is ever killed by name. Needs: dnsperf (with -m dot, 2.9+), h2load
# (nghttp2-client), unbound, openssl, dig, curl, python3; dnsdist optional (bench/setup.sh
# installs them).
set -u -o pipefail
set +m

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$BENCH/.." && pwd)"
ROUNDS=1; SCEN="miss,dot,doh"; SECS=10; CLIENTS=8; OUTST=200; STREAMS=25; MISS_NAMES=1000000
BASE=5410; OUT=""; PEERS=(); DOH_METHOD=POST
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2;;
    --scenarios) SCEN=$2; shift 2;;
    --secs) SECS=$2; shift 2;;
    --clients) CLIENTS=$2; shift 2;;
    --outstanding) OUTST=$2; shift 2;;
    --streams) STREAMS=$2; shift 2;;
    --miss-names) MISS_NAMES=$2; shift 2;;
    --base-port) BASE=$2; shift 2;;
    --doh-method) DOH_METHOD=$2; shift 2;;
    --out) OUT=$2; shift 2;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0;;
    -*) echo "unknown option $1" >&2; exit 2;;
    *) PEERS+=("$1"); shift;;
  esac
done
if [ ${#PEERS[@]} -eq 0 ]; then
  PEERS=(rind)
  for p in unbound dnsdist; do command -v $p >/dev/null && PEERS+=($p); done
fi
case "$DOH_METHOD" in POST|GET) ;; *) echo "--doh-method is POST or GET" >&2; exit 2;; esac
NEEDS="dnsperf dig curl openssl unbound python3"
case ",$SCEN," in *,doh,*) NEEDS+=" h2load";; esac
for t in $NEEDS; do
  command -v $t >/dev/null || { echo "$t missing: run bench/setup.sh (as root)" >&2; exit 1; }
done
RIND_BIN=${RIND_BIN:-$REPO/target/release/rind-server}

# ports: upstream plain/DoT, then per peer plain/DoT/DoH/http
UP_PLAIN=$((BASE)); UP_DOT=$((BASE + 1))
declare -A P_DNS P_DOT P_DOH P_HTTP
i=1
for p in rind unbound dnsdist; do
  P_DNS[$p]=$((BASE + 10 * i)); P_DOT[$p]=$((BASE + 10 * i + 1))
  P_DOH[$p]=$((BASE + 10 * i + 2)); P_HTTP[$p]=$((BASE + 10 * i + 3)); i=$((i + 1))
done

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
[ -n "$OUT" ] || { if [ -w "$BENCH" ]; then OUT="$BENCH/results/encrypted-$STAMP"; else OUT="/tmp/rind-bench/results/encrypted-$STAMP"; fi; }
WORK=/tmp/rind-bench/encrypted-$STAMP
DATA=/tmp/rind-bench/data-encrypted
mkdir -p "$OUT/raw" "$WORK" "$DATA"
RESULTS="$OUT/results.jsonl"
log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# ---------------------------------------------------------------- processes (as in compare.sh)
STARTED=()
start_bg() { local logf=$1; shift; setsid "$@" </dev/null >"$logf" 2>&1 & BG_PID=$!; STARTED+=("$BG_PID"); }
is_alive() { local s; s=$(ps -o stat= -p "$1" 2>/dev/null) && [ -n "$s" ] && [ "${s:0:1}" != Z ]; }
stop_pid() {
  local pid=$1 i
  if is_alive "$pid"; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
    for i in $(seq 50); do is_alive "$pid" || break; sleep 0.1; done
  fi
  if is_alive "$pid"; then log "pid $pid did not exit on TERM, sending KILL"; kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null; fi
  wait "$pid" 2>/dev/null
  local keep=() q; for q in "${STARTED[@]}"; do [ "$q" = "$pid" ] || keep+=("$q"); done; STARTED=("${keep[@]}")
}
cleanup() { local p; for p in "${STARTED[@]}"; do stop_pid "$p"; done; }
trap cleanup EXIT
trap 'exit 130' INT TERM
sess_pids() { local s; for s in "$@"; do ps -o pid= --sid "$s" 2>/dev/null; done; }
cpu_ticks() { local t=0 p v; for p in $(sess_pids "$@"); do
    v=$(sed 's/^.*) //' /proc/$p/stat 2>/dev/null | awk '{print $12 + $13}'); t=$((t + ${v:-0})); done; echo $t; }
rss_kb() { local t=0 p r; for p in $(sess_pids "$@"); do
    r=$(awk '/^VmRSS:/{print $2}' /proc/$p/status 2>/dev/null); t=$((t + ${r:-0})); done; echo $t; }
CLK_TCK=$(getconf CLK_TCK)
wait_answer() {   # wait_answer PORT SECS: until h000.bench.example A is 203.0.113.1 over UDP
  local end=$(( $(date +%s) + $2 ))
  while [ "$(date +%s)" -lt $end ]; do
    dig +short +time=1 +tries=1 @127.0.0.1 -p "$1" h000.bench.example A 2>/dev/null | grep -qxF 203.0.113.1 && return 0
    sleep 0.3
  done
  return 1
}
rind_handshakes() {  # sum of rind_upstream_connections_total over its series
  curl -s --max-time 3 "http://127.0.0.1:${P_HTTP[rind]}/metrics" 2>/dev/null |
    awk '/^rind_upstream_connections_total/ {s += $NF} END {print s + 0}'
}

# ---------------------------------------------------------------- test CA and certificates
PKI=$WORK/pki; mkdir -p "$PKI"
mkcert() {   # mkcert NAME SAN
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" \
    -keyout "$PKI/$1.key" -out "$PKI/$1.csr" 2>/dev/null &&
  printf 'subjectAltName=%s\n' "$2" > "$PKI/$1.ext" &&
  openssl x509 -req -in "$PKI/$1.csr" -CA "$PKI/ca.pem" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 2 -extfile "$PKI/$1.ext" -out "$PKI/$1.pem" 2>/dev/null
}
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/CN=rind bench CA" -keyout "$PKI/ca.key" -out "$PKI/ca.pem" 2>/dev/null &&
mkcert upstream.bench.test "DNS:upstream.bench.test,IP:127.0.0.1" &&
mkcert peer.bench.test "DNS:peer.bench.test,DNS:localhost,IP:127.0.0.1" ||
  { echo "openssl could not make the test certificates" >&2; exit 1; }
chmod 644 "$PKI"/*

# ---------------------------------------------------------------- query files (bench/lib)
DATA_STAMP="v1 miss=$MISS_NAMES $(md5sum < "$BENCH/lib/gen_queries.py" | cut -c1-8)"
if [ "$(cat "$DATA/stamp" 2>/dev/null)" != "$DATA_STAMP" ]; then
  log "generating query files ($MISS_NAMES miss names)"
  python3 "$BENCH/lib/gen_queries.py" "$DATA" "$MISS_NAMES" && echo "$DATA_STAMP" > "$DATA/stamp"
fi

for port in $UP_PLAIN $UP_DOT $(for p in "${PEERS[@]}"; do echo ${P_DNS[$p]} ${P_DOT[$p]} ${P_DOH[$p]} ${P_HTTP[$p]}; done); do
  ss -Hlnut "sport = :$port" | grep -q . && { echo "port $port already in use (--base-port)" >&2; exit 1; }
done

# ---------------------------------------------------------------- the DoT upstream
unbound_common() {   # unbound_common RUNDIR THREADS
  cat <<EOF
server:
    do-ip4: yes
    do-ip6: no
    do-tcp: yes
    access-control: 127.0.0.0/8 allow
    num-threads: $2
    so-reuseport: yes
    msg-cache-slabs: 2
    rrset-cache-slabs: 2
    infra-cache-slabs: 2
    key-cache-slabs: 2
    num-queries-per-thread: 4096
    outgoing-range: 8192
    incoming-num-tcp: 1000
    module-config: "iterator"
    do-not-query-localhost: no
    qname-minimisation: no
    username: ""
    chroot: ""
    directory: "$1"
    pidfile: "$1/unbound.pid"
    use-syslog: no
    logfile: ""
    verbosity: 0
remote-control:
    control-enable: no
EOF
}
UPDIR=$WORK/upstream; mkdir -p "$UPDIR"
{ unbound_common "$UPDIR" 2; cat <<EOF
server:
    port: $UP_PLAIN
    interface: 127.0.0.1@$UP_PLAIN
    interface: 127.0.0.1@$UP_DOT
    tls-port: $UP_DOT
    tls-service-key: "$PKI/upstream.bench.test.key"
    tls-service-pem: "$PKI/upstream.bench.test.pem"
    local-zone: "bench.example." redirect
    local-data: "bench.example. 3600 IN A 203.0.113.1"
EOF
} > "$UPDIR/unbound.conf"
start_bg "$UPDIR/log" unbound -d -c "$UPDIR/unbound.conf"; UPSTREAM_PID=$BG_PID
wait_answer $UP_PLAIN 15 || { log "upstream unbound did not come up"; cat "$UPDIR/log" >&2; exit 1; }
if command -v kdig >/dev/null; then
  kdig +short +tls-ca="$PKI/ca.pem" +tls-hostname=upstream.bench.test @127.0.0.1 -p $UP_DOT h000.bench.example A \
    | grep -qxF 203.0.113.1 || { log "upstream DoT port does not answer"; exit 1; }
fi
log "DoT upstream: unbound pid $UPSTREAM_PID on 127.0.0.1:$UP_DOT (plain $UP_PLAIN); results -> $OUT"
{
  echo "date_utc: $STAMP"; echo "host: $(uname -srm)"; echo "cpus: $(nproc)"
  echo "dnsperf: $(dnsperf -h 2>&1 | sed -n 's/^Version //p')"
  command -v h2load >/dev/null && echo "h2load: $(h2load --version | head -1)"
  echo "upstream: unbound $(unbound -V | sed -n 's/^Version //p') (DoT, redirect zone, 2 threads)"
  echo "args: rounds=$ROUNDS scenarios=$SCEN secs=$SECS -c $CLIENTS -q $OUTST -m $STREAMS doh=$DOH_METHOD miss_names=$MISS_NAMES"
  echo "peers: ${PEERS[*]}"
} > "$OUT/env.txt"

# ---------------------------------------------------------------- peers
peer_version() {
  case "$1" in
    rind) "$RIND_BIN" --version 2>/dev/null | head -1 || echo rind;;
    unbound) echo "unbound $(unbound -V | sed -n 's/^Version //p')";;
    dnsdist) dnsdist --version | head -1 | cut -d' ' -f1,2;;
  esac
}
start_peer() {   # start_peer NAME RUNDIR -> PEER_PIDS
  local name=$1 run=$2
  PEER_PIDS=(); mkdir -p "$run"
  case "$name" in
    rind)
      [ -x "$RIND_BIN" ] || { log "no $RIND_BIN (cargo build --release -p rind-server)"; return 1; }
      start_bg "$run/log" "$RIND_BIN" --dns-addr "127.0.0.1:${P_DNS[rind]}" --http-addr "127.0.0.1:${P_HTTP[rind]}" \
        --upstream "tls://127.0.0.1:$UP_DOT#upstream.bench.test" --upstream-ca "$PKI/ca.pem" \
        --dot-addr "127.0.0.1:${P_DOT[rind]}" --doh-addr "127.0.0.1:${P_DOH[rind]}" \
        --tls-cert "$PKI/peer.bench.test.pem" --tls-key "$PKI/peer.bench.test.key" \
        --data-dir "$run/data" --log-level warn;;
    unbound)
      { unbound_common "$run" 2; cat <<EOF
server:
    port: ${P_DNS[unbound]}
    interface: 127.0.0.1@${P_DNS[unbound]}
    interface: 127.0.0.1@${P_DOT[unbound]}
    interface: 127.0.0.1@${P_DOH[unbound]}
    tls-port: ${P_DOT[unbound]}
    https-port: ${P_DOH[unbound]}
    tls-service-key: "$PKI/peer.bench.test.key"
    tls-service-pem: "$PKI/peer.bench.test.pem"
    tls-cert-bundle: "$PKI/ca.pem"
    msg-cache-size: 128m
    rrset-cache-size: 256m
    prefetch: no
    root-hints: "$BENCH/peers/root.hints"
forward-zone:
    name: "."
    forward-addr: 127.0.0.1@$UP_DOT#upstream.bench.test
    forward-tls-upstream: yes
    forward-first: no
EOF
      } > "$run/unbound.conf"
      start_bg "$run/log" unbound -d -c "$run/unbound.conf";;
    dnsdist)
      cat > "$run/dnsdist.conf" <<EOF
setSecurityPollSuffix("")
setLocal("127.0.0.1:${P_DNS[dnsdist]}", { reusePort = true })
addLocal("127.0.0.1:${P_DNS[dnsdist]}", { reusePort = true })
addTLSLocal("127.0.0.1:${P_DOT[dnsdist]}", "$PKI/peer.bench.test.pem", "$PKI/peer.bench.test.key", { provider = "openssl" })
addDOHLocal("127.0.0.1:${P_DOH[dnsdist]}", "$PKI/peer.bench.test.pem", "$PKI/peer.bench.test.key", "/dns-query")
setACL({ "127.0.0.0/8" })
newServer({ address = "127.0.0.1:$UP_DOT", tls = "openssl", subjectName = "upstream.bench.test",
            caStore = "$PKI/ca.pem", validateCertificates = true,
            checkName = "h000.bench.example.", checkType = "A", checkInterval = 5 })
pc = newPacketCache(1000000, { maxTTL = 86400, minTTL = 0 })
getPool(""):setCache(pc)
EOF
      start_bg "$run/log" dnsdist --supervised --disable-syslog -C "$run/dnsdist.conf";;
  esac
  PEER_PIDS+=("$BG_PID")
  wait_answer "${P_DNS[$name]}" 20 || { log "$name did not answer on 127.0.0.1:${P_DNS[$name]}"; tail -n 5 "$run/log" >&2; return 1; }
}

run_dnsperf() {   # run_dnsperf RAW MODE PORT FILE extra... -> JSON from bench/lib/dnsperf_parse.py
  local raw=$1 mode=$2 port=$3 file=$4; shift 4
  timeout $((SECS + 30)) dnsperf -m "$mode" -s 127.0.0.1 -p "$port" -d "$file" -l "$SECS" -t 2 \
    -c "$CLIENTS" -q "$OUTST" "$@" >"$raw" 2>&1
  local rc=$?
  python3 "$BENCH/lib/dnsperf_parse.py" "$raw" | python3 -c '
import json,sys; d=json.load(sys.stdin); d["dnsperf_rc"]=int(sys.argv[1]); print(json.dumps(d))' "$rc"
}

DOH_FILES=$WORK/doh; mkdir -p "$DOH_FILES"
python3 "$BENCH/lib/doh_queries.py" make "$DOH_FILES" "https://127.0.0.1:0/dns-query" ||
  { echo "could not write the DoH query files" >&2; exit 1; }
run_h2load() {   # run_h2load RAW PORT RUNDIR -> JSON from bench/lib/h2load_parse.py
  local raw=$1 port=$2 run=$3 url="https://127.0.0.1:$2/dns-query" check why rc
  # One answer first, with curl over HTTP/2 checking the certificate: h2load counts HTTP
  # statuses only, so this is what says the 2xx answers are DNS answers.
  check=$(curl -s --http2 --max-time 5 --cacert "$PKI/ca.pem" -H "content-type: application/dns-message" \
    -H "accept: application/dns-message" --data-binary @"$DOH_FILES/query.bin" -o "$run/doh-check.bin" \
    -w '%{http_code} %{http_version}' "$url" 2>&1)
  why=$(python3 "$BENCH/lib/doh_queries.py" check "$run/doh-check.bin" 2>&1) || true
  [ "${check%% *}" = 200 ] || why="curl: HTTP ${check:-no answer}"
  local load=(-d "$DOH_FILES/query.bin" -H "content-type: application/dns-message" "$url")
  # h2load -i takes scheme, host and port from the first URL only; rewrite all to this port.
  [ "$DOH_METHOD" = GET ] && { sed "s#https://127.0.0.1:0/#https://127.0.0.1:$port/#" "$DOH_FILES/get-uris.txt" > "$run/get-uris.txt"; load=(-i "$run/get-uris.txt"); }
  timeout $((SECS + 30)) h2load -D "$SECS" -c "$CLIENTS" -m "$STREAMS" -t 1 \
    -H "accept: application/dns-message" "${load[@]}" >"$raw" 2>&1
  rc=$?
  python3 "$BENCH/lib/h2load_parse.py" "$raw" | python3 -c '
import json,sys; d=json.load(sys.stdin); d["h2load_rc"]=int(sys.argv[1]); d["http_version"]=sys.argv[3]
if sys.argv[2]: d["check_failed"]=sys.argv[2]
print(json.dumps(d))' "$rc" "$why" "${check#* }"
}

measure() {   # measure NAME ROUND
  local name=$1 round=$2 run="$WORK/r$2-$1" ver ok=1 sc j t0 t1 u0 u1 h0 h1
  ver=$(peer_version "$name")
  log "round $round: $name ($ver)"
  start_peer "$name" "$run" || ok=0
  local line="{\"peer\":\"$name\",\"round\":$round,\"version\":\"$ver\",\"ok\":$ok"
  if [ $ok = 1 ]; then
    dnsperf -s 127.0.0.1 -p "${P_DNS[$name]}" -d "$DATA/hit.txt" -n 2 -c 1 -t 2 >"$run/warm.txt" 2>&1
    for sc in ${SCEN//,/ }; do
      t0=$(cpu_ticks "${PEER_PIDS[@]}"); u0=$(cpu_ticks "$UPSTREAM_PID")
      h0=0; [ "$name" = rind ] && h0=$(rind_handshakes)
      case "$sc" in
        miss) j=$(run_dnsperf "$OUT/raw/r$round-$name-miss.txt" udp "${P_DNS[$name]}" "$DATA/miss.txt" -n 1);;
        dot)  j=$(run_dnsperf "$OUT/raw/r$round-$name-dot.txt" dot "${P_DOT[$name]}" "$DATA/hit.txt");;
        doh)  j=$(run_h2load "$OUT/raw/r$round-$name-doh.txt" "${P_DOH[$name]}" "$run");;
        *) log "unknown scenario $sc"; continue;;
      esac
      t1=$(cpu_ticks "${PEER_PIDS[@]}"); u1=$(cpu_ticks "$UPSTREAM_PID")
      h1=0; [ "$name" = rind ] && h1=$(rind_handshakes)
      line+=",\"$sc\":$(python3 -c '
import json,sys
d=json.loads(sys.argv[1]); hz=int(sys.argv[4])
d["peer_cpu_s"]=int(sys.argv[2])/hz; d["upstream_cpu_s"]=int(sys.argv[3])/hz
if sys.argv[5] == "rind": d["handshakes"]=float(sys.argv[6])
print(json.dumps(d))' "$j" $((t1 - t0)) $((u1 - u0)) "$CLK_TCK" "$name" "$(awk -v a="$h0" -v b="$h1" 'BEGIN{print b-a}')")"
      local p alive=1; for p in "${PEER_PIDS[@]}"; do is_alive "$p" || alive=0; done
      [ $alive = 1 ] || { log "$name died during $sc"; line+=",\"died_during\":\"$sc\""; break; }
    done
    line+=",\"rss_kb_end\":$(rss_kb "${PEER_PIDS[@]}")"
  fi
  echo "$line}" >> "$RESULTS"
  local p; for p in "${PEER_PIDS[@]}"; do stop_pid "$p"; done
  cp "$run/log" "$OUT/raw/r$round-$name.log" 2>/dev/null
}

for r in $(seq 1 "$ROUNDS"); do
  for p in "${PEERS[@]}"; do measure "$p" "$r"; done
done
stop_pid "$UPSTREAM_PID"

# ---------------------------------------------------------------- the table
echo
python3 - "$RESULTS" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
peers = list(dict.fromkeys(r["peer"] for r in rows))
SCENARIOS = ("miss", "dot", "doh")

def bad(d):
    """Why one scenario's run is not a figure (answers lost or failed), or None."""
    if "h2load_rc" in d:
        if d.get("check_failed"):
            return f"curl check: {d['check_failed']}"
        if d["h2load_rc"] or not d.get("completed"):
            return f"h2load exit {d['h2load_rc']}, {d.get('completed', 0)} answers"
        n = sum(d.get(k, 0) for k in ("failed", "errored", "timeout"))
        not2 = sum(d.get(k, 0) for k in ("status_3xx", "status_4xx", "status_5xx"))
        if n or not2:
            return (f"{d.get('failed', 0)} failed, {d.get('errored', 0)} errored, {d.get('timeout', 0)} timed out, "
                    f"{not2} not 2xx of {d.get('done', 0)} requests")
        return None
    if d.get("dnsperf_rc") or not d.get("completed"):
        return f"dnsperf exit {d.get('dnsperf_rc')}, completed {d.get('completed')}"
    if (d.get("lost") or 0) > 0.01 * (d.get("sent") or 0):
        return f"lost {d['lost']} of {d.get('sent')} queries"
    if d.get("noerror", 0) < d["completed"]:
        return f"rcodes {d.get('rcodes')}"
    return None

def med(v):
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else None
def good(p, sc):
    return [r[sc] for r in rows if r["peer"] == p and r.get(sc) and bad(r[sc]) is None]
def reasons(p, sc):
    return "; ".join(f"r{r['round']}: {bad(r[sc])}" for r in rows if r["peer"] == p and r.get(sc) and bad(r[sc]))
qps = lambda d: d.get("qps")
cpu = lambda d: d["peer_cpu_s"] / d["completed"] * 1e6 if d.get("completed") else None
hs = lambda d: d["handshakes"] / d["completed"] * 1e4 if d.get("completed") and "handshakes" in d else None
fk = lambda v: "—" if v is None else f"{v/1000:.1f}k"
ff = lambda v, f=".1f": "—" if v is None else format(v, f)
print("| peer | miss QPS, DoT upstream | CPU µs/miss | DoT hit QPS | CPU µs/DoT hit | DoH hit req/s | CPU µs/DoH hit | handshakes per 10k misses |")
print("|---|---|---|---|---|---|---|---|")
A = {}
for p in peers:
    ver = next(r["version"] for r in rows if r["peer"] == p)
    a = {(sc, k): med([f(d) for d in good(p, sc)]) for sc in SCENARIOS for k, f in (("qps", qps), ("cpu", cpu), ("hs", hs))}
    A[p] = a
    print(f"| {ver} | {fk(a['miss','qps'])} | {ff(a['miss','cpu'])} | {fk(a['dot','qps'])} | {ff(a['dot','cpu'])} | "
          f"{fk(a['doh','qps'])} | {ff(a['doh','cpu'])} | {ff(a['miss','hs'], '.2f') if p == 'rind' else '—'} |")
print()
rounds = sorted({r["round"] for r in rows})
def per_round(r, s):
    d = r.get(s) or {}
    return fk(d.get("qps")) + ("!" if d and bad(d) else "")
print(f"(median of the good runs of {len(rounds)} round(s); per round: " + "; ".join(
    f"{r['peer']} r{r['round']} " + "/".join(per_round(r, s) for s in SCENARIOS) for r in rows)
    + " miss/DoT/DoH QPS, ! = lost or failed answers, not counted)")
NAMES = {"miss": "misses over a DoT upstream", "dot": "DoT hits", "doh": "DoH hits"}
if "rind" in A:
    for p in peers:
        if p == "rind":
            continue
        parts = []
        for sc in SCENARIOS:
            if not any(r.get(sc) for r in rows if r["peer"] in ("rind", p)):
                continue
            x, y = A["rind"][sc, "qps"], A[p][sc, "qps"]
            if x and y:
                parts.append(f"{NAMES[sc]} {x / y:.2f}× (CPU per {'miss' if sc == 'miss' else 'hit'} "
                             f"{A['rind'][sc, 'cpu'] / A[p][sc, 'cpu']:.2f}×)" if A["rind"][sc, "cpu"] and A[p][sc, "cpu"]
                             else f"{NAMES[sc]} {x / y:.2f}× (CPU per query —)")
            else:
                why = "; ".join(f"{q} {reasons(q, sc) or 'no run'}" for q, v in (("rind", x), (p, y)) if not v)
                parts.append(f"{NAMES[sc]} — ({why})")
        print(f"rind against {p} in the same run: " + ", ".join(parts))
for r in rows:
    if not r.get("ok"):
        print(f"- {r['peer']} round {r['round']}: did not start/answer")
    if r.get("died_during"):
        print(f"- {r['peer']} round {r['round']}: died during {r['died_during']}")
    for s in SCENARIOS:
        d = r.get(s) or {}
        if d and bad(d):
            print(f"- {r['peer']} round {r['round']} {s}: not counted: {bad(d)}")
PY
echo
echo "(raw results: $OUT)"
