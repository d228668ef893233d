#!/usr/bin/env bash
# Checks dist/rind.service the way systemd will read it, without systemd running (a
# container, CI): `systemd-analyze verify` over a scratch root that holds the unit, the
# rind-server binary at the unit's ExecStart path and the host's own units, with the man
# pages rind generates on MANPATH (verify also checks the Documentation= pages). Any
# warning fails the check, not only errors; then `systemd-analyze security` must rate the
# sandbox's exposure at most 2.0 of 10 (its --threshold counts in tenths: 20).
#
# usage: dist/verify.sh [RIND_SERVER_BINARY [RIND_CTL_BINARY]]   (default: target/debug/...)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
server=${1:-$repo/target/debug/rind-server}
ctl=${2:-$repo/target/debug/rind-ctl}
for bin in "$server" "$ctl"; do
  [ -x "$bin" ] || { echo "verify.sh: $bin is missing: cargo build -p rind-server -p rind-ctl first" >&2; exit 2; }
done
command -v systemd-analyze >/dev/null || { echo "verify.sh: systemd-analyze is missing (apt-get install systemd)" >&2; exit 2; }

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
root=$scratch/root
mkdir -p "$root/usr/local/bin" "$root/etc/systemd/system" "$root/usr/lib/systemd" "$scratch/man/man1"
cp -a /lib/systemd/system "$root/usr/lib/systemd/"
exec_start=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$repo/dist/rind.service")
[ "$exec_start" = /usr/local/bin/rind-server ] || { echo "verify.sh: ExecStart is $exec_start; update this script" >&2; exit 1; }
cp "$server" "$root$exec_start"
cp "$repo/dist/rind.service" "$root/etc/systemd/system/rind.service"
"$server" man "$scratch/man/man1"
"$ctl" man "$scratch/man/man1"

out=$(MANPATH=$scratch/man systemd-analyze verify --root="$root" /etc/systemd/system/rind.service 2>&1) || {
  echo "$out" >&2; echo "verify.sh: systemd-analyze verify failed" >&2; exit 1; }
if [ -n "$out" ]; then
  echo "$out" >&2; echo "verify.sh: systemd-analyze verify warned (see above)" >&2; exit 1
fi
echo "systemd-analyze verify: dist/rind.service OK"
systemd-analyze security --offline=yes --threshold=20 --root="$root" \
  /etc/systemd/system/rind.service 2>&1 | tail -n 1
