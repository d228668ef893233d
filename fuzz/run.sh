#!/usr/bin/env bash
# One fuzz target for a while: fuzz/run.sh <target> [seconds] [libFuzzer args...]
#   targets: handler, tcp_framing, doh_request, record_json, master_file (cargo fuzz list)
#   seconds: how long to fuzz (default 600); libFuzzer prints its final stats at the end.
# Seeds come from corpus/<target>/ (committed, never written); new inputs go to work/<target>/
# (git-ignored), crashes to artifacts/<target>/. Replay inputs (a crash reproduces, a fixed
# one passes) with: fuzz/run.sh <target> 0 FILE...
# Uses the stable toolchain (RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its -Z flags) and no
# sanitizer by default (safe Rust; debug assertions and overflow checks stay on);
# SANITIZER=address turns AddressSanitizer on.
set -euo pipefail
target=${1:?usage: fuzz/run.sh <target> [seconds] [libFuzzer args or input files...]}
seconds=${2:-600}
shift $(( $# < 2 ? $# : 2 ))
export RUSTC_BOOTSTRAP=1
if [[ $# -gt 0 && -f $1 ]]; then
    inputs=()
    for file in "$@"; do inputs+=("$(realpath "$file")"); done
    cd "$(dirname "$0")"
    exec cargo fuzz run -s "${SANITIZER:-none}" "$target" "${inputs[@]}"
fi
cd "$(dirname "$0")"
mkdir -p "work/$target"
exec cargo fuzz run -s "${SANITIZER:-none}" "$target" "work/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -print_final_stats=1 "$@"
