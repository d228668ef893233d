#!/usr/bin/env bash
# Side-by-side DNS forwarder/cache benchmark on loopback: rind, and Unbound and dnsdist when
# they are installed, each forwarding to the same local authoritative upstream (knotd on
# 127.0.0.1:5300 serving bench.example.), driven by dnsperf. Prints the README's
# performance table at the end. Install the tools with bench/setup.sh (Debian/Ubuntu, root).
#
# usage: bench/compare.sh [options] [peer ...]
#   peers          : rind unbound dnsdist knot echo forward
#                    (default: rind, plus unbound and dnsdist when installed)
#                    rind runs target/release/rind-server (built first when missing; or
#                    RIND_BIN=/path/rind-server) through bench/rind-peer.sh, fresh data dir.
#                    knot measures the upstream itself; echo is a recvmmsg/sendmmsg responder
#                    (needs cc), the machine's limit for hits; forward relays every query to
#                    the upstream and back with nothing else (needs cc; 1024 random-port
#                    sockets as rind's contract asks), the machine's limit for misses.
#   a custom peer  : NAME --cmd "<command line>" [--port P] [--version "text"]
#                    The command must stay in the foreground, listen on 127.0.0.1:{PORT}
#                    (default 5310) and forward to 127.0.0.1:{UPSTREAM} (5300); both are
#                    substituted. It must answer h000.bench.example A with 203.0.113.2.
# options:
#   --rounds N        rounds over all peers, interleaved (default 1; the README used 2)
#   --scenarios LIST  comma list of hit,lat,miss (default hit,lat,miss)
#   --hit-secs S      duration of the saturated cache-hit run (default 10)
#   --miss-secs S     max duration of the cache-miss run (default 10)
#   --lat-secs S      duration of the fixed-rate latency run (default 5)
#   --lat-qps Q       offered rate of the fixed-rate latency run (default 10000)
#   --threads T       dnsperf -T (default 1: -T 2 takes a core from the server on 2 cores)
#   --clients C       dnsperf -c (default 8)
#   --outstanding Q   dnsperf -q (default 200)
#   --miss-names N    unique names in the miss file (default 1000000)
#   --out DIR         results directory (default bench/results/<UTC timestamp>)
#   --tag TEXT        free text stored with each result line
#   -h, --help        this text
# env: QUIET_PCT (default 10) / QUIET_MAX (default 120): before each peer, wait up to QUIET_MAX s
#      for the machine's CPUs to be < QUIET_PCT % busy (shared machines); waits are recorded.
#
# Scenarios, per peer, after a start with an empty cache: a warm-up (2 passes over 100
# names), "hit" (those 100 names for --hit-secs, saturated), "lat" (the same at a fixed
# --lat-qps: unloaded p50/p99), "miss" (unique names answered by the zone's wildcard, each
# one an upstream query). Per scenario it records the peer's CPU time, the upstream's, and
# RSS; results go to DIR/results.jsonl and DIR/raw/. Tables from a results directory:
#   python3 bench/lib/summarize.py --readme DIR     the README's table
#   python3 bench/lib/summarize.py DIR              every column
#   python3 bench/lib/summarize.py --detail DIR     CPU, memory and tails
#
# Everything binds to 127.0.0.1 only. Every daemon this script starts is started with setsid
# (so its PID is its process-group id) and is stopped by that PID / group at the end of its
# run and again by an EXIT trap; nothing is ever killed by name.
set -u -o pipefail
set +m   # no job control: a background `setsid cmd &` then keeps cmd's PID (== its PGID)

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
UPSTREAM_PORT=5300
REPO="$(cd "$BENCH/.." && pwd)"
ECHO_BIN=/tmp/rind-bench/bin/udp_echo
FORWARD_BIN=/tmp/rind-bench/bin/udp_forward

QUIET_PCT=${QUIET_PCT:-10}; QUIET_MAX=${QUIET_MAX:-120}
ROUNDS=1; SCEN="hit,lat,miss"; HIT_SECS=10; MISS_SECS=10; LAT_SECS=5; LAT_QPS=10000
THREADS=1; CLIENTS=8; OUTST=200; MISS_NAMES=1000000; OUT=""; TAG=""
PEERS=(); declare -A CMD PORT VER

while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2;;
    --scenarios) SCEN=$2; shift 2;;
    --hit-secs) HIT_SECS=$2; shift 2;;
    --miss-secs) MISS_SECS=$2; shift 2;;
    --lat-secs) LAT_SECS=$2; shift 2;;
    --lat-qps) LAT_QPS=$2; shift 2;;
    --threads) THREADS=$2; shift 2;;
    --clients) CLIENTS=$2; shift 2;;
    --outstanding) OUTST=$2; shift 2;;
    --miss-names) MISS_NAMES=$2; shift 2;;
    --out) OUT=$2; shift 2;;
    --tag) TAG=$2; shift 2;;
    --cmd) [ ${#PEERS[@]} -gt 0 ] || { echo "--cmd needs a peer name before it" >&2; exit 2; }
           CMD[${PEERS[-1]}]=$2; shift 2;;
    --port) PORT[${PEERS[-1]}]=$2; shift 2;;
    --version) VER[${PEERS[-1]}]=$2; shift 2;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0;;
    -*) echo "unknown option $1" >&2; exit 2;;
    *) PEERS+=("$1"); shift;;
  esac
done
if [ ${#PEERS[@]} -eq 0 ]; then
  PEERS=(rind)
  for p in unbound dnsdist; do
    if command -v $p >/dev/null; then PEERS+=($p); else echo "$p not installed: left out (bench/setup.sh installs it)" >&2; fi
  done
fi

default_port() {
  case "$1" in
    knot) echo $UPSTREAM_PORT;; unbound) echo 5301;; dnsdist) echo 5305;; echo) echo 5399;; forward) echo 5398;;
    *) echo 5310;;
  esac
}
for p in "${PEERS[@]}"; do
  [ -n "${PORT[$p]:-}" ] || PORT[$p]=$(default_port "$p")
  case "$p" in
    echo|forward|knot|unbound|dnsdist) ;;
    rind) [ -n "${CMD[$p]:-}" ] || CMD[$p]="$BENCH/rind-peer.sh {PORT} {UPSTREAM}";;
    *) [ -n "${CMD[$p]:-}" ] || { echo "custom peer '$p' needs --cmd" >&2; exit 2; };;
  esac
done

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
if [ -z "$OUT" ]; then
  # a read-only checkout keeps its results in /tmp instead
  if [ -w "$BENCH" ]; then OUT="$BENCH/results/$STAMP"; else OUT="/tmp/rind-bench/results/$STAMP"; fi
fi
mkdir -p "$OUT/raw"
WORK=/tmp/rind-bench/$STAMP
DATA=/tmp/rind-bench/data
mkdir -p "$WORK" "$DATA" /tmp/rind-bench/bin
RESULTS="$OUT/results.jsonl"

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# ---------------------------------------------------------------- processes
STARTED=()        # every PID (= process-group id) this script started and has not reaped
UPSTREAM_PID=""
LEAK_PID=""

start_bg() {      # start_bg LOGFILE cmd args...  -> sets BG_PID (setsid: PID == PGID), records it
  local logf=$1; shift
  setsid "$@" </dev/null >"$logf" 2>&1 &
  BG_PID=$!
  STARTED+=("$BG_PID")
}
is_alive() { local s; s=$(ps -o stat= -p "$1" 2>/dev/null) && [ -n "$s" ] && [ "${s:0:1}" != Z ]; }
stop_pid() {      # TERM the group we started, wait <=5 s, then KILL it
  local pid=$1 i
  if is_alive "$pid"; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
    for i in $(seq 50); do is_alive "$pid" || break; sleep 0.1; done
  fi
  if is_alive "$pid"; then
    log "pid $pid did not exit on TERM, sending KILL"
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null
  fi
  wait "$pid" 2>/dev/null
  local keep=() q
  for q in "${STARTED[@]}"; do [ "$q" = "$pid" ] || keep+=("$q"); done
  STARTED=("${keep[@]}")
}
cleanup() {
  local p
  for p in "${STARTED[@]}"; do stop_pid "$p"; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# processes (pid list) of the sessions of the given leader PIDs
sess_pids() { local s; for s in "$@"; do ps -o pid= --sid "$s" 2>/dev/null; done; }
rss_kb() { local t=0 p r; for p in $(sess_pids "$@"); do
    r=$(awk '/^VmRSS:/{print $2}' /proc/$p/status 2>/dev/null); t=$((t + ${r:-0})); done; echo $t; }
cpu_ticks() { local t=0 p v; for p in $(sess_pids "$@"); do
    v=$(sed 's/^.*) //' /proc/$p/stat 2>/dev/null | awk '{print $12 + $13}'); t=$((t + ${v:-0})); done; echo $t; }
CLK_TCK=$(getconf CLK_TCK)
upstream_queries() {  # queries received so far by the upstream knotd (all protocols), via mod-stats
  knotc -c "$WORK/upstream/knot.conf" stats mod-stats.request-protocol 2>/dev/null | awk -F' = ' '{s+=$2} END{print s+0}'
}
sys_busy_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9; exit}' /proc/stat; }
sys_idle_ticks() { awk '/^cpu /{print $5+$6; exit}' /proc/stat; }
# quiet_wait: the machine is shared; before each peer wait (<= QUIET_MAX s) until the
# CPUs are nearly idle (busy < QUIET_PCT % of all cores over 1 s). Sets QUIET_WAITED, BUSY_PCT.
quiet_wait() {
  local t0=$(date +%s) b0 i0 b1 i1
  QUIET_WAITED=0
  while :; do
    b0=$(sys_busy_ticks); i0=$(sys_idle_ticks); sleep 1; b1=$(sys_busy_ticks); i1=$(sys_idle_ticks)
    BUSY_PCT=$(( 100 * (b1 - b0) / ( (b1 - b0) + (i1 - i0) + 1 ) ))
    [ "$BUSY_PCT" -lt "$QUIET_PCT" ] && break
    QUIET_WAITED=$(( $(date +%s) - t0 ))
    if [ "$QUIET_WAITED" -ge "$QUIET_MAX" ]; then
      log "machine still busy (${BUSY_PCT}% of all cores) after ${QUIET_WAITED}s; measuring anyway (flagged)"
      ps -eo pid,pcpu,etime,comm --sort=-pcpu | sed -n 2,4p >&2
      break
    fi
    sleep 2
  done
}

wait_answer() {   # wait_answer PORT SECS [EXPECT]: until h000.bench.example A is answered with EXPECT
  local port=$1 secs=$2 want=${3:-203.0.113.2} end=$(( $(date +%s) + $2 ))
  while [ "$(date +%s)" -lt $end ]; do
    if dig +short +time=1 +tries=1 @127.0.0.1 -p "$port" h000.bench.example A 2>/dev/null | grep -qxF "$want"; then
      return 0; fi
    sleep 0.2
  done
  return 1
}

render() {        # render TEMPLATE OUTFILE PORT RUNDIR
  sed -e "s#@RUN@#$4#g" -e "s#@BENCH@#$BENCH#g" -e "s#@PORT@#$3#g" \
      -e "s#@UPSTREAM_PORT@#$UPSTREAM_PORT#g" "$1" > "$2"
}

peer_version() {
  case "$1" in
    echo) echo "udp_echo (recvmmsg/sendmmsg, 2 threads)";;
    forward) echo "udp_forward (2 threads, 1024 upstream sockets)";;
    knot) knotd --version | head -1;;
    unbound) echo "unbound $(unbound -V | sed -n 's/^Version //p' | head -1)";;
    dnsdist) echo "$(dnsdist --version | head -1 | cut -d' ' -f1,2) (packet cache)";;
    rind) [ -n "${VER[$1]:-}" ] && { echo "${VER[$1]}"; return; }
          "${RIND_BIN:-$REPO/target/release/rind-server}" --version 2>/dev/null | head -1 || echo rind;;
    *) if [ -n "${VER[$1]:-}" ]; then echo "${VER[$1]}"; else
         timeout 3 ${CMD[$1]%% *} --version 2>/dev/null | head -1 || echo unknown; fi;;
  esac
}

# start_peer NAME RUNDIR -> sets PEER_PIDS
start_peer() {
  local name=$1 run=$2 port=${PORT[$1]} conf c
  PEER_PIDS=()
  mkdir -p "$run"
  case "$name" in
    echo)
      start_bg "$run/log" "$ECHO_BIN" "$port" 2; PEER_PIDS+=("$BG_PID");;
    forward)
      start_bg "$run/log" "$FORWARD_BIN" "$port" "$UPSTREAM_PORT" 1024; PEER_PIDS+=("$BG_PID");;
    knot)
      PEER_PIDS+=("$UPSTREAM_PID");;                      # the running upstream itself
    unbound)
      render "$BENCH/peers/unbound.conf" "$run/unbound.conf" "$port" "$run"
      start_bg "$run/log" unbound -d -c "$run/unbound.conf"; PEER_PIDS+=("$BG_PID");;
    dnsdist)
      render "$BENCH/peers/dnsdist.conf" "$run/dnsdist.conf" "$port" "$run"
      start_bg "$run/log" dnsdist --supervised --disable-syslog -C "$run/dnsdist.conf"; PEER_PIDS+=("$BG_PID");;
    *)
      c=${CMD[$name]//\{PORT\}/$port}; c=${c//\{UPSTREAM\}/$UPSTREAM_PORT}
      echo "$c" > "$run/cmdline"
      start_bg "$run/log" bash -c "exec $c"; PEER_PIDS+=("$BG_PID");;
  esac
  local want=203.0.113.2; [ "$name" = echo ] && want=203.0.113.1   # echo answers every A with .1
  if ! wait_answer "$port" 20 "$want"; then
    log "$name did not answer on 127.0.0.1:$port within 20 s; log:"; tail -n 5 "$run"/log* >&2
    return 1
  fi
}

# run_dnsperf TAGFILE DURATION extra-args... -> writes raw file, echoes parsed JSON
run_dnsperf() {   # run_dnsperf RAWFILE DURATION extra-args...  -> echoes parsed JSON
  # always -v (per-query latencies, for percentiles); the big per-query output stays in /tmp,
  # only dnsperf's summary lines are kept next to the results.
  local raw=$1 dur=$2; shift 2
  local vfile="$WORK/dnsperf-v.txt"
  timeout $((dur + 20)) /usr/bin/time -f 'DNSPERF_CPU %U %S %e' \
    dnsperf -s 127.0.0.1 -p "$PEER_PORT" -l "$dur" -t 2 -v "$@" >"$vfile" 2>"$raw.err"
  local rc=$?
  local cpu wall; cpu=$(awk '/^DNSPERF_CPU/{print $2 + $3}' "$raw.err"); wall=$(awk '/^DNSPERF_CPU/{print $4}' "$raw.err")
  grep -v '^> ' "$vfile" > "$raw"
  python3 "$BENCH/lib/dnsperf_parse.py" "$vfile" | python3 -c '
import json,sys; d=json.load(sys.stdin); d["dnsperf_rc"]=int(sys.argv[1]); d["dnsperf_cpu_s"]=float(sys.argv[2] or 0); d["dnsperf_wall_s"]=float(sys.argv[3] or 0); print(json.dumps(d))' "$rc" "${cpu:-0}" "${wall:-0}"
  rm -f "$vfile"
}

measure() {       # measure NAME ROUND
  local name=$1 round=$2 run="$WORK/r$2-$1" j t0 t1 u0 u1 m0 m1 q0 q1
  PEER_PORT=${PORT[$name]}
  local ver; ver=$(peer_version "$name")
  log "round $round: $name ($ver) on 127.0.0.1:$PEER_PORT"
  quiet_wait
  local ok=1
  start_peer "$name" "$run" || ok=0
  local line="{\"peer\":\"$name\",\"round\":$round,\"version\":$(printf '%s' "$ver" | python3 -c 'import json,sys;print(json.dumps(sys.stdin.read()))'),\"port\":$PEER_PORT,\"ok\":$ok"
  line+=",\"busy_pct_before\":$BUSY_PCT,\"quiet_waited_s\":$QUIET_WAITED"
  line+=",\"clients\":$CLIENTS,\"threads\":$THREADS,\"outstanding\":$OUTST,\"tag\":\"$TAG\""
  if [ $ok = 1 ]; then
    line+=",\"rss_kb_start\":$(rss_kb "${PEER_PIDS[@]}")"
    # warm-up: two passes over the hit set, then check a wildcard name resolves
    dnsperf -s 127.0.0.1 -p "$PEER_PORT" -d "$DATA/hit.txt" -n 2 -c 1 -t 2 >"$run/warm.txt" 2>&1
    local wc; wc=$(dig +short +time=2 +tries=1 @127.0.0.1 -p "$PEER_PORT" warmcheck.bench.example A 2>/dev/null)
    line+=",\"wildcard_ok\":$([ "$wc" = 203.0.113.1 ] && echo true || echo false)"
    local sc
    for sc in ${SCEN//,/ }; do
      q0=$(upstream_queries); t0=$(cpu_ticks "${PEER_PIDS[@]}"); u0=$(cpu_ticks "$UPSTREAM_PID"); m0=$(sys_busy_ticks)
      case "$sc" in
        hit)  j=$(run_dnsperf "$OUT/raw/r$round-$name-hit.txt" "$HIT_SECS" -d "$DATA/hit.txt" \
                    -c "$CLIENTS" -T "$THREADS" -q "$OUTST");;
        lat)  j=$(run_dnsperf "$OUT/raw/r$round-$name-lat.txt" "$LAT_SECS" -d "$DATA/hit.txt" \
                    -c "$CLIENTS" -T 1 -q "$OUTST" -Q "$LAT_QPS");;
        miss) j=$(run_dnsperf "$OUT/raw/r$round-$name-miss.txt" "$MISS_SECS" -d "$DATA/miss.txt" -n 1 \
                    -c "$CLIENTS" -T "$THREADS" -q "$OUTST");;
        *) log "unknown scenario $sc"; continue;;
      esac
      t1=$(cpu_ticks "${PEER_PIDS[@]}"); u1=$(cpu_ticks "$UPSTREAM_PID"); m1=$(sys_busy_ticks); q1=$(upstream_queries)
      line+=",\"$sc\":$(python3 -c '
import json,sys
d=json.loads(sys.argv[1]); hz=int(sys.argv[5])
d["peer_cpu_s"]=int(sys.argv[2])/hz; d["upstream_cpu_s"]=int(sys.argv[3])/hz
d["machine_busy_cpu_s"]=int(sys.argv[4])/hz
# CPU burnt by anything but peer, upstream and dnsperf (other tenants; also softirq not charged to a task)
ups = 0 if sys.argv[6] == "knot" else d["upstream_cpu_s"]   # knot: peer == upstream
d["other_cpu_s"]=round(d["machine_busy_cpu_s"]-d["peer_cpu_s"]-ups-d.get("dnsperf_cpu_s",0),2)
d["upstream_queries"]=int(sys.argv[7])
print(json.dumps(d))' "$j" $((t1 - t0)) $((u1 - u0)) $((m1 - m0)) "$CLK_TCK" "$name" $((q1 - q0)))"
      line+=",\"rss_kb_after_$sc\":$(rss_kb "${PEER_PIDS[@]}")"
      # a peer that died mid-run is reported, not silently measured
      local p alive=1; for p in "${PEER_PIDS[@]}"; do is_alive "$p" || alive=0; done
      [ $alive = 1 ] || { log "$name died during $sc"; line+=",\"died_during\":\"$sc\""; break; }
    done
    line+=",\"rss_kb_end\":$(rss_kb "${PEER_PIDS[@]}")"
  fi
  line+="}"
  echo "$line" >> "$RESULTS"
  if [ "$name" != knot ]; then local p; for p in "${PEER_PIDS[@]}"; do stop_pid "$p"; done; fi
  cp -r "$run" "$OUT/raw/r$round-$name-rundir" 2>/dev/null
  rm -rf "$OUT/raw/r$round-$name-rundir/cache" "$OUT/raw/r$round-$name-rundir/db"
}

# ---------------------------------------------------------------- main
for t in dnsperf dig knotd knotc python3; do
  command -v $t >/dev/null || { echo "$t missing: run bench/setup.sh (as root)" >&2; exit 1; }
done
# Builds bench/echo/NAME.c into BIN when BIN is missing or older than its sources.
build_c() {
  local src="$BENCH/echo/$1.c" header="$BENCH/echo/udp_common.h" bin=$2
  if [ ! -x "$bin" ] || [ "$src" -nt "$bin" ] || [ "$header" -nt "$bin" ]; then
    mkdir -p "$(dirname "$bin")"
    cc -O2 -pthread -o "$bin" "$src"
  fi
}

for p in "${PEERS[@]}"; do
  case "$p" in
    unbound|dnsdist) command -v $p >/dev/null || { echo "$p is not installed (bench/setup.sh)" >&2; exit 1; };;
    echo) build_c udp_echo "$ECHO_BIN" || exit 1;;
    forward) build_c udp_forward "$FORWARD_BIN" || exit 1;;
    rind) if [ -z "${RIND_BIN:-}" ] && [ ! -x "$REPO/target/release/rind-server" ]; then
            log "building rind-server (release)"
            (cd "$REPO" && cargo build --release -p rind-server) || exit 1
          fi;;
  esac
done
DATA_STAMP="v1 bench.example miss=$MISS_NAMES $(md5sum < "$BENCH/lib/gen_queries.py" | cut -c1-8)"
if [ "$(cat "$DATA/stamp" 2>/dev/null)" != "$DATA_STAMP" ]; then
  log "generating query files ($MISS_NAMES miss names)"
  python3 "$BENCH/lib/gen_queries.py" "$DATA" "$MISS_NAMES" && echo "$DATA_STAMP" > "$DATA/stamp"
fi
for port in $UPSTREAM_PORT $(for p in "${PEERS[@]}"; do echo "${PORT[$p]}"; done); do
  if ss -Hlun "sport = :$port" | grep -q .; then
    [ "$port" = $UPSTREAM_PORT ] && { echo "port $port already in use (a knotd left over?)" >&2; exit 1; }
    echo "port $port already in use" >&2; exit 1
  fi
done

{
  echo "date_utc: $STAMP"; echo "host: $(uname -srm)"; echo "cpus: $(nproc)"
  grep -m1 'model name' /proc/cpuinfo; echo "dnsperf: $(dnsperf -h 2>&1 | sed -n 's/^Version //p')"
  echo "args: rounds=$ROUNDS scenarios=$SCEN hit=${HIT_SECS}s miss=${MISS_SECS}s lat=${LAT_SECS}s@${LAT_QPS}qps -T $THREADS -c $CLIENTS -q $OUTST miss_names=$MISS_NAMES"
  echo "peers: ${PEERS[*]}"
  for p in "${PEERS[@]}"; do [ -n "${CMD[$p]:-}" ] && echo "cmd[$p]: ${CMD[$p]}"; done
} > "$OUT/env.txt"

# leak watch: count any DNS packet on a non-loopback interface while we run
IFACES=$(ip -o link show up 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' | grep -vx lo)
if command -v tcpdump >/dev/null && [ -n "$IFACES" ]; then
  start_bg "$OUT/leakwatch.txt" bash -c "for i in $(echo $IFACES); do tcpdump -p -n -l -i \$i 'port 53 or port 853 or port 5300' & done; wait"
  LEAK_PID=$BG_PID
fi

# the upstream: knotd on 127.0.0.1:5300
mkdir -p "$WORK/upstream"
render "$BENCH/peers/knot.conf" "$WORK/upstream/knot.conf" $UPSTREAM_PORT "$WORK/upstream"
start_bg "$WORK/upstream/log" knotd -c "$WORK/upstream/knot.conf"; UPSTREAM_PID=$BG_PID
wait_answer $UPSTREAM_PORT 15 || { log "upstream knotd did not come up"; cat "$WORK/upstream/log" >&2; exit 1; }
log "upstream knotd pid $UPSTREAM_PID on 127.0.0.1:$UPSTREAM_PORT; results -> $OUT"

for r in $(seq 1 "$ROUNDS"); do
  for p in "${PEERS[@]}"; do measure "$p" "$r"; done
done

stop_pid "$UPSTREAM_PID"
if [ -n "$LEAK_PID" ]; then
  sleep 0.5; stop_pid "$LEAK_PID"
  # all DNS packets on non-loopback interfaces while we ran; "ours" = anything that names the bench
  # zone, the root, a secpoll/PowerDNS name or goes to a server other than the host's resolver
  # (other processes on the machine, e.g. package installs, use the host resolver).
  HOSTRES=$(awk '/^nameserver/{print $2; exit}' /etc/resolv.conf)
  n=$(grep -c ' IP' "$OUT/leakwatch.txt" 2>/dev/null)
  ours=$(python3 - "$OUT/leakwatch.txt" "$HOSTRES" <<'PY'
import re, sys
n = 0
for line in open(sys.argv[1], errors="replace"):
    m = re.search(r" IP6? (\S+) > (\S+?):", line)
    if not m:
        continue
    src, dst = m.group(1).rsplit(".", 1)[0], m.group(2).rsplit(".", 1)[0]
    host_resolver = sys.argv[2] in (src, dst)
    if not host_resolver or re.search(r"bench\.example|secpoll|powerdns|root-servers", line):
        n += 1
print(n)
PY
)
  echo "non_loopback_dns_packets_total: ${n:-0}" >> "$OUT/env.txt"
  echo "non_loopback_dns_packets_from_bench: ${ours:-0}" >> "$OUT/env.txt"
  log "DNS packets on non-loopback interfaces during run: ${n:-0} total, ${ours:-0} attributable to the bench (see leakwatch.txt)"
fi
echo
python3 "$BENCH/lib/summarize.py" --readme "$OUT"
echo
echo "(every column: python3 bench/lib/summarize.py $OUT)"
