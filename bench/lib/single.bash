# Shared by the single-purpose bench scripts (import-export.sh, records-memory.sh,
# blocklist.sh, zones-axfr.sh): a scratch directory removed on exit, every process started
# stopped by PID, free loopback ports, and one rind started at a time.
# Source it after `cd` to the repository root; it sets $rind and $work.

rind=${RIND_BIN:-target/release/rind-server}
work=$(mktemp -d "/tmp/rind-bench.XXXXXX")
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# --help prints the calling script's header comment.
if [ "${1:-}" = --help ] || [ "${1:-}" = -h ]; then
    sed -n '2,/^set /{/^#/s/^# \{0,1\}//p}' "$0"
    exit 0
fi

# A loopback port free for both UDP and TCP (a DNS listener takes both).
free_port() {
    python3 -c 'import socket
for _ in range(50):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0)); p = u.getsockname()[1]
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try: t.bind(("127.0.0.1", p))
    except OSError: continue
    print(p); break'
}

# start_rind DATA_DIR [FLAG...]: starts rind on fresh ports with no reachable upstream; sets
# $pid, $dns_port, $http_port, $api and $took (seconds from start to answering HTTP).
start_rind() {
    local data=$1
    shift
    dns_port=$(free_port); http_port=$(free_port)
    api="http://127.0.0.1:$http_port/api/v1"
    local began=$EPOCHREALTIME log="$work/rind-$http_port.log"
    "$rind" --dns-addr "127.0.0.1:$dns_port" --http-addr "127.0.0.1:$http_port" \
        --upstream 127.0.0.1:9 --data-dir "$data" --log-level "${RIND_LOG_LEVEL:-warn}" "$@" \
        > "$log" 2>&1 &
    pid=$!
    pids+=("$pid")
    # Every 5 ms (up to 24 s): the start is read to within a few ms.
    for _ in $(seq 4800); do
        curl -sf "http://127.0.0.1:$http_port/healthz" > /dev/null && break
        kill -0 "$pid" 2> /dev/null || break
        sleep 0.005
    done
    curl -sf "http://127.0.0.1:$http_port/healthz" > /dev/null \
        || { echo "rind-server did not start:"; tail -5 "$log"; exit 1; }
    took=$(python3 -c "print(f'{$EPOCHREALTIME - $began:.2f}')")
}

# stop_rind: SIGTERM to the running rind, and waits for it to finish its shutdown; sets
# $stop_took (seconds from the signal to the exit).
stop_rind() {
    local began=$EPOCHREALTIME
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
    stop_took=$(python3 -c "print(f'{$EPOCHREALTIME - $began:.2f}')")
}

# status_mib FIELD: a /proc status field of the running rind (VmRSS, VmHWM) in MiB.
status_mib() {
    awk -v k="$1:" '$1 == k { printf "%.1f MiB", $2 / 1024 }' "/proc/$pid/status"
}
