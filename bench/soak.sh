#!/usr/bin/env bash
# Soak test: mixed load on a release rind-server, on loopback only, bounded in time.
#
#   bench/soak.sh [--duration SECONDS] [--out DIR]
#
# 1. builds rind-server and the bench_upstream example (an authoritative upstream for
#    bench.example. that answers A, NXDOMAIN for nx* names, NODATA otherwise);
# 2. measures the maximum QPS of the query mix for 10 s (dnsperf, UDP);
# 3. runs the soak for --duration (default 600 s) at ~70% of that: UDP hits, misses and
#    NXDOMAIN, a DNS-over-TCP stream, and API writes (create + delete) from curl;
# 4. samples rind's RSS and open file descriptors every 10 s into DIR/samples.csv and says
#    whether they levelled off (the last minute within 10% of the minute at 60% of the run:
#    the cache and sled fill up early, a leak keeps growing to the end), and checks that no
#    query was lost and no API write failed.
# Needs: dnsperf, curl, python3. Every process it starts is stopped by its PID on exit.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
duration=600
out=/tmp/rind-soak-$(date -u +%Y%m%dT%H%M%SZ)
while [ $# -gt 0 ]; do
  case $1 in
    --duration) duration=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "usage: $0 [--duration SECONDS] [--out DIR]" >&2; exit 2 ;;
  esac
done
for tool in dnsperf curl python3; do
  command -v $tool >/dev/null || { echo "soak: $tool is needed (apt-get install -y dnsperf curl)" >&2; exit 2; }
done
mkdir -p "$out"
dns_port=15353 http_port=18053 up_port=15300
pids=()
data=
# The store is only the soak's scratch (tens to hundreds of MiB); the report stays in $out.
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "$data" ]; then rm -rf "$data"; fi
}
trap cleanup EXIT

echo "soak: building (release)"
(cd "$root" && cargo build --release -q -p rind-server --bin rind-server --example bench_upstream)
bin=$root/target/release

"$bin/examples/bench_upstream" "127.0.0.1:$up_port" 2>"$out/upstream.log" &
pids+=($!)
data=$(mktemp -d /tmp/rind-soak-data.XXXXXX)
"$bin/rind-server" --dns-addr "127.0.0.1:$dns_port" --http-addr "127.0.0.1:$http_port" \
  --upstream "127.0.0.1:$up_port" --data-dir "$data" --cache-size 50000 2>"$out/rind.log" &
rind=$!
pids+=($rind)
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$http_port/healthz" >/dev/null && break
  sleep 0.1
done
curl -sf "http://127.0.0.1:$http_port/healthz" >/dev/null || { echo "soak: rind-server did not start" >&2; cat "$out/rind.log" >&2; exit 1; }

# The query mix: 60% hits (200 names), 30% misses (unique names), 10% NXDOMAIN.
python3 - "$out/queries.txt" <<'EOF'
import random, sys
random.seed(7)
with open(sys.argv[1], "w") as f:
    for i in range(1_000_000):
        r = random.random()
        if r < 0.6:
            f.write(f"hot{random.randrange(200)}.bench.example A\n")
        elif r < 0.9:
            f.write(f"u{i}.bench.example A\n")
        else:
            f.write(f"nx{i}.bench.example A\n")
EOF
head -n 20000 "$out/queries.txt" > "$out/tcp-queries.txt"

echo "soak: measuring the maximum for 10 s"
dnsperf -s 127.0.0.1 -p $dns_port -d "$out/queries.txt" -l 10 -c 8 -q 200 -t 2 > "$out/max.txt" 2>&1 || true
max=$(awk '/Queries per second/ {print int($4)}' "$out/max.txt")
[ -n "$max" ] && [ "$max" -gt 0 ] || { echo "soak: could not measure the maximum" >&2; cat "$out/max.txt" >&2; exit 1; }
rate=$(( max * 70 / 100 ))
udp_rate=$(( rate * 9 / 10 ))
tcp_rate=$(( rate / 10 ))
echo "soak: max $max QPS; soaking ${duration}s at $rate QPS ($udp_rate UDP + $tcp_rate TCP) plus API writes"

dnsperf -s 127.0.0.1 -p $dns_port -d "$out/queries.txt" -l "$duration" -Q "$udp_rate" -c 8 -q 500 -t 2 > "$out/udp.txt" 2>&1 &
perf_udp=$!
pids+=($perf_udp)
dnsperf -m tcp -s 127.0.0.1 -p $dns_port -d "$out/tcp-queries.txt" -l "$duration" -Q "$tcp_rate" -c 4 -q 50 -t 2 > "$out/tcp.txt" 2>&1 &
perf_tcp=$!
pids+=($perf_tcp)

# API writes: create then delete, about 10 pairs a second.
(
  end=$((SECONDS + duration)); ok=0; failed=0; i=0
  while [ $SECONDS -lt $end ]; do
    i=$((i + 1))
    body="{\"name\":\"soak$i.home.arpa\",\"type\":\"A\",\"data\":\"10.0.$((i / 250 % 250)).$((i % 250 + 1))\"}"
    # No pipelines here: under pipefail, `printf | head -n 1` fails whenever head exits
    # before printf has written everything, which once counted a good create as failed.
    created=$(curl -s -m 30 -w '\n%{http_code} %{time_total}' -X POST -H 'content-type: application/json' -d "$body" \
      "http://127.0.0.1:$http_port/api/v1/records" 2>&1) && create_rc=0 || create_rc=$?
    created_body=${created%$'\n'*}
    created_status=${created##*$'\n'}
    id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])' <<<"$created_body" 2>/dev/null) || id=""
    deleted="" delete_rc=""
    if [ -n "$id" ]; then
      deleted=$(curl -s -m 30 -w '%{http_code} %{time_total}' -X DELETE "http://127.0.0.1:$http_port/api/v1/records/$id" 2>&1) \
        && delete_rc=0 || delete_rc=$?
    fi
    if [ "$delete_rc" = 0 ] && [ "${deleted%% *}" = 204 ]; then
      ok=$((ok + 1))
      echo "${created_status#* } ${deleted#* }" >> "$out/api-latency.txt"
    else
      failed=$((failed + 1))
      echo "$(date -u +%T) create (curl exit $create_rc): ${created//$'\n'/ } delete (curl exit ${delete_rc:-none}): ${deleted:-not tried}" >> "$out/api-errors.txt"
    fi
    sleep 0.1
  done
  echo "$ok $failed" > "$out/api.txt"
) &
api=$!
pids+=($api)

echo "t_s,rss_kib,fds" > "$out/samples.csv"
start=$SECONDS
while kill -0 "$perf_udp" 2>/dev/null; do
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$rind/status")
  fds=$(ls "/proc/$rind/fd" | wc -l)
  echo "$((SECONDS - start)),$rss,$fds" >> "$out/samples.csv"
  sleep 10
done
wait "$perf_udp" "$perf_tcp" "$api" || true
kill -0 "$rind" 2>/dev/null || { echo "soak: rind-server died" >&2; tail -5 "$out/rind.log" >&2; exit 1; }

python3 - "$out" <<'EOF'
import csv, re, sys
out = sys.argv[1]
rows = [(int(t), int(r), int(f)) for t, r, f in list(csv.reader(open(f"{out}/samples.csv")))[1:]]
def lost(path):
    text = open(path).read()
    sent = re.search(r"Queries sent:\s+(\d+)", text)
    done = re.search(r"Queries completed:\s+(\d+)", text)
    lost = re.search(r"Queries lost:\s+(\d+)", text)
    return int(sent.group(1)) if sent else 0, int(done.group(1)) if done else 0, int(lost.group(1)) if lost else -1
ok, failed = map(int, open(f"{out}/api.txt").read().split())
u, t = lost(f"{out}/udp.txt"), lost(f"{out}/tcp.txt")
print(f"UDP: sent {u[0]}, completed {u[1]}, lost {u[2]}")
print(f"TCP: sent {t[0]}, completed {t[1]}, lost {t[2]}")
lat = sorted(float(x) for line in open(f"{out}/api-latency.txt") for x in line.split())
if lat:
    print(f"API latency: p50 {lat[len(lat)//2]*1000:.1f} ms, p99 {lat[int(len(lat)*0.99)]*1000:.1f} ms, max {lat[-1]*1000:.0f} ms")
print(f"API: {ok} create+delete pairs ok, {failed} failed")
end = rows[-1][0]
early = [r for r in rows if 0.6 * end - 60 <= r[0] < 0.6 * end] or rows[:3]
late = rows[-6:]
avg = lambda xs, i: sum(x[i] for x in xs) / len(xs)
rss_e, rss_l, fd_e, fd_l = avg(early, 1), avg(late, 1), avg(early, 2), avg(late, 2)
print(f"RSS: min {min(r[1] for r in rows)//1024} MiB, max {max(r[1] for r in rows)//1024} MiB; minute before 60% avg {rss_e/1024:.1f} MiB, last minute avg {rss_l/1024:.1f} MiB")
print(f"FDs: min {min(r[2] for r in rows)}, max {max(r[2] for r in rows)}; minute before 60% avg {fd_e:.0f}, last minute avg {fd_l:.0f}")
print("RSS by minute (MiB): " + " ".join(str(r[1] // 1024) for r in rows if r[0] % 60 < 10))
level = rss_l <= rss_e * 1.10 and fd_l <= fd_e * 1.10
print("levelled off" if level else "STILL GROWING")
sys.exit(0 if level and failed == 0 and u[2] == 0 and t[2] == 0 else 1)
EOF
