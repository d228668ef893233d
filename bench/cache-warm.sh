#!/usr/bin/env bash
# The warm-start figures for a big cache: fills a store with N fresh cached answers (default
# 1000000, A records for hostI.bench.example., a day's TTL; the fill_cache example) and
# starts rind on it with --cache-size N. Prints the seconds from start to answering HTTP, to
# the first cache hit over UDP (host{N-1}.bench.example., among the first the warm-up loads)
# and to the end of the warm-up (from its log line), then VmRSS once it finished and after
# SETTLE seconds (default 10), and the peak (VmHWM). Then the same after a second start.
# Needs python3 and curl; builds the example with cargo. Not part of CI.
# usage: bench/cache-warm.sh [N]   (RIND_BIN defaults to target/release/rind-server)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib/single.bash
count=${1:-1000000}
settle=${SETTLE:-10}

cargo build --release -q -p rind-server --example fill_cache
target/release/examples/fill_cache "$work/data" "$count"

# first_hit PORT NAME BEGAN: seconds from BEGAN until NAME is answered over UDP with NOERROR
# and an answer (asked every 5 ms, for at most 60 s).
first_hit() {
    python3 - "$1" "$2" "$3" <<'PY'
import socket, struct, sys, time
port, name, began = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
query = struct.pack(">HHHHHH", 0x5157, 0x0100, 1, 0, 0, 0)
query += b"".join(bytes([len(l)]) + l.encode() for l in name.rstrip(".").split(".")) + b"\0"
query += struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.005)
deadline = time.time() + 60
while time.time() < deadline:
    s.sendto(query, ("127.0.0.1", port))
    try:
        reply = s.recv(512)
    except OSError:
        continue
    rcode, answers = reply[3] & 0x0F, struct.unpack(">H", reply[6:8])[0]
    if rcode == 0 and answers > 0:
        print(f"{time.time() - began:.2f}")
        sys.exit(0)
print("never")
PY
}

# run LABEL: one start on the filled store, its figures, then a clean stop. The asker starts
# first, so the first hit is timed from the start of rind, not from its health check.
run() {
    local label=$1 began hit_file="$work/hit"
    dns_port=$(free_port); http_port=$(free_port)
    local log="$work/rind-$http_port.log"
    began=$EPOCHREALTIME
    first_hit "$dns_port" "host$((count - 1)).bench.example." "$began" > "$hit_file" &
    pids+=($!)
    "$rind" --dns-addr "127.0.0.1:$dns_port" --http-addr "127.0.0.1:$http_port" \
        --upstream 127.0.0.1:9 --data-dir "$work/data" --cache-size "$count" \
        --log-level info > "$log" 2>&1 &
    pid=$!
    pids+=("$pid")
    for _ in $(seq 3000); do
        curl -sf "http://127.0.0.1:$http_port/healthz" > /dev/null && break
        sleep 0.01
    done
    local took
    took=$(python3 -c "print(f'{$EPOCHREALTIME - $began:.2f}')")
    for _ in $(seq 1200); do grep -q "cache warm-up" "$log" && break; sleep 0.1; done
    local done_line
    done_line=$(grep -m1 "cache warm-up" "$log" || echo "no warm-up line within 120 s")
    wait "${pids[-2]}" || true
    echo "$label: answering HTTP after ${took} s, first cache hit after $(cat "$hit_file") s"
    echo "  ${done_line#*INFO }"
    echo "  VmRSS when the warm-up finished: $(status_mib VmRSS)"
    sleep "$settle"
    echo "  after ${settle} s more: VmRSS $(status_mib VmRSS), peak (VmHWM) $(status_mib VmHWM)"
    stop_rind
}

run "first start"
run "second start"
