#!/usr/bin/env python3
"""Helpers for tests/external/zones.sh (standard library only): fill a zone through rind's
API from a few threads, and time how long a write on rind takes to show up on a secondary.

  zt.py fill HTTP ZONE COUNT [START]      COUNT A records h<i>.ZONE (i from START)
  zt.py filltxt HTTP ZONE COUNT            COUNT TXT records t<i>.ZONE of about 1.5 KB each
  zt.py converge HTTP DNS ZONE N GAP       N writes GAP s apart; per write, the ms from the
                                           201 to the new answer on DNS (a secondary); then
                                           "median MS max MS"; exit 1 if one took over 5 s
  zt.py ask DNS NAME                       the A addresses DNS answers for NAME, one a line
  zt.py proxy PORT TARGET RATE             relays UDP and TCP on 127.0.0.1:PORT to
                                           127.0.0.1:TARGET, TCP replies at RATE bytes/s (a
                                           slow link, so a transfer can be cut mid-way)
"""

import http.client
import json
import os
import random
import socket
import statistics
import struct
import sys
import threading
import time

WAIT = 5.0  # seconds a write may take to reach the secondary before it counts as lost


def post(conn, name, ip, rtype="A"):
    body = json.dumps({"name": name, "type": rtype, "ttl": 300, "data": ip})
    conn.request("POST", "/api/v1/records", body, {"content-type": "application/json"})
    reply = conn.getresponse()
    text = reply.read()
    if reply.status != 201:
        raise SystemExit(f"POST {name}: HTTP {reply.status} {text!r}")


def ip_of(i):
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


def txt_of(i):
    # Six strings of 250 bytes: a big zone from few writes (each write waits for a flush).
    return " ".join(f'"{i:08d}-{k}-' + "x" * 239 + '"' for k in range(6))


def fill(api, zone, count, start=0, threads=None, txt=False):
    # Concurrent writes share the server's flushes (group commit); ZT_THREADS sets how many.
    threads = threads or int(os.environ.get("ZT_THREADS", "8"))
    host, port = api.rsplit(":", 1)
    errors = []

    def work(t):
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        try:
            for i in range(start + t, start + count, threads):
                if txt:
                    post(conn, f"t{i}.{zone}", txt_of(i), "TXT")
                else:
                    post(conn, f"h{i}.{zone}", ip_of(i))
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if errors:
        raise SystemExit(f"fill failed: {errors[0]}")


def encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def skip_name(b, i):
    while True:
        n = b[i]
        if n & 0xC0 == 0xC0:
            return i + 2
        i += 1 + n
        if n == 0:
            return i


def ask(dns, name, timeout=0.2):
    """The A addresses `dns` (host:port) answers for `name`; None when no reply came."""
    host, port = dns.rsplit(":", 1)
    qid = random.randrange(65536)
    query = struct.pack(">HHHHHH", qid, 0, 1, 0, 0, 0) + encode_name(name) + struct.pack(">HH", 1, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(query, (host, int(port)))
        while True:
            b, _ = s.recvfrom(65535)
            if struct.unpack(">H", b[:2])[0] == qid:
                break
    except socket.timeout:
        return None
    finally:
        s.close()
    qd, an = struct.unpack(">HH", b[4:8])
    i = 12
    for _ in range(qd):
        i = skip_name(b, i) + 4
    found = []
    for _ in range(an):
        i = skip_name(b, i)
        rtype, _, _, rdlen = struct.unpack(">HHIH", b[i : i + 10])
        i += 10
        if rtype == 1 and rdlen == 4:
            found.append(socket.inet_ntoa(b[i : i + 4]))
        i += rdlen
    return found


def converge(api, dns, zone, n, gap):
    host, port = api.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    times = []
    tag = random.randrange(1 << 30)
    for k in range(n):
        began = time.monotonic()
        name = f"c{tag}-{k}.{zone}"
        ip = ip_of(k + 1)
        post(conn, name, ip)
        acked = time.monotonic()
        while True:
            if ip in (ask(dns, name, 0.05) or []):
                break
            if time.monotonic() - acked > WAIT:
                raise SystemExit(f"write {k} ({name}) not on {dns} after {WAIT} s")
            time.sleep(0.002)
        ms = (time.monotonic() - acked) * 1000
        times.append(ms)
        print(f"write {k + 1}/{n}: {ms:.1f} ms", flush=True)
        rest = gap - (time.monotonic() - began)
        if rest > 0 and k + 1 < n:
            time.sleep(rest)
    p90 = sorted(times)[int(0.9 * (len(times) - 1))]
    print(
        f"median {statistics.median(times):.1f} ms p90 {p90:.1f} ms max {max(times):.1f} ms over {n} writes"
    )


def proxy(port, target, rate):
    dest = ("127.0.0.1", target)

    def udp():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", port))
        while True:
            data, peer = s.recvfrom(65535)

            def relay(data=data, peer=peer):
                u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                u.settimeout(3)
                try:
                    u.sendto(data, dest)
                    s.sendto(u.recv(65535), peer)
                except OSError:
                    pass
                finally:
                    u.close()

            threading.Thread(target=relay, daemon=True).start()

    def pipe(src, dst, throttle):
        chunk = 4096
        try:
            while True:
                data = src.recv(chunk)
                if not data:
                    break
                dst.sendall(data)
                if throttle:
                    time.sleep(len(data) / rate)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    threading.Thread(target=udp, daemon=True).start()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(16)
    while True:
        client, _ = listener.accept()
        server = socket.create_connection(dest)
        threading.Thread(target=pipe, args=(client, server, False), daemon=True).start()
        threading.Thread(target=pipe, args=(server, client, True), daemon=True).start()


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "fill":
        fill(args[0], args[1], int(args[2]), int(args[3]) if len(args) > 3 else 0)
    elif cmd == "filltxt":
        fill(args[0], args[1], int(args[2]), txt=True)
    elif cmd == "converge":
        converge(args[0], args[1], args[2], int(args[3]), float(args[4]))
    elif cmd == "proxy":
        proxy(int(args[0]), int(args[1]), float(args[2]))
    elif cmd == "ask":
        for ip in ask(args[0], args[1], 1.0) or []:
            print(ip)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
