# Shared by the scripts in tests/external/ (sourced, not run: .ci/run runs only *.sh).
# After sourcing: `pids` (append every process started; stopped on exit), `work` (a scratch
# directory, removed on exit unless KEEP_LOGS is set), `free_port`, `pass`, `fail` and
# `failures`. Set `stop_signal` before starting processes to stop them otherwise than with
# SIGTERM (zones.sh uses KILL).

work=$(mktemp -d "/tmp/rind-$(basename "$0" .sh).XXXXXX")
pids=()
stop_signal=${stop_signal:-TERM}
cleanup() {
    for pid in "${pids[@]}"; do
        # A stopped (SIGSTOP) process must run again to act on the signal.
        kill -CONT "$pid" 2>/dev/null || true
        kill "-$stop_signal" "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [ -n "${KEEP_LOGS:-}" ]; then echo "logs kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# A port free for both UDP and TCP on 127.0.0.1.
free_port() {
    python3 - <<'PY'
import socket
for _ in range(50):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 0))
    port = u.getsockname()[1]
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        t.bind(("127.0.0.1", port))
    except OSError:
        continue
    print(port)
    break
PY
}

failures=0
pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
