#!/usr/bin/env bash
# Installs what the bench scripts need (Debian/Ubuntu, as root; idempotent):
#   dnsperf (the load), knot + knot-dnsutils (the upstream, knotc, kdig), unbound and dnsdist
#   (the peers rind is compared with), dnsutils (dig), iproute2 (ss), time, tcpdump (the
#   leak watch: counts DNS packets on non-loopback interfaces, which should be none),
#   nghttp2-client (h2load, the DoH load), openssl (test certificates), curl.
# Package scripts are not allowed to start the daemons (they would bind port 53 on every
# address); where systemd runs, the units the packages enabled are disabled again.
set -u -o pipefail
PKGS="dnsperf knot knot-dnsutils unbound dnsdist dnsutils iproute2 time tcpdump python3 nghttp2-client openssl curl"
case "${1:-}" in
  -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0;;
esac

missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=" $p"
done
if [ -n "$missing" ]; then
  echo "installing:$missing"
  apt-get update -qq
  created_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; created_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
  rc=$?
  [ $created_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
  [ $rc = 0 ] || { echo "apt-get install failed" >&2; exit 1; }
else
  echo "packages: all present"
fi
if [ -d /run/systemd/system ]; then   # only where systemd is PID 1
  for u in unbound knot dnsdist; do systemctl disable --now "$u" 2>/dev/null; done
fi
