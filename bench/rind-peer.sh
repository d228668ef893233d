#!/usr/bin/env bash
# Starts rind-server as a benchmark peer in the foreground with a fresh data dir (so every
# run starts cold), on 127.0.0.1:PORT, forwarding to 127.0.0.1:UPSTREAM.
# usage: rind-peer.sh PORT UPSTREAM [extra rind-server flags...]
set -euo pipefail
port=$1 upstream=$2
shift 2
bin=${RIND_BIN:-$(cd "$(dirname "$0")/.." && pwd)/target/release/rind-server}
data=$(mktemp -d /tmp/rind-bench-data.XXXXXX)
exec "$bin" --dns-addr "127.0.0.1:$port" --http-addr 127.0.0.1:0 \
  --upstream "127.0.0.1:$upstream" --data-dir "$data" --log-level warn "$@"
