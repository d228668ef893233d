#!/usr/bin/env python3
"""Write the DoH load files for h2load and check one DoH answer (deterministic).

  doh_queries.py make DIR URL : DIR/query.bin, the wire query for h000.bench.example A (ID 0, RD,
                                as RFC 8484 §4.1 suggests), the body every POST carries; and
                                DIR/get-uris.txt, one URL?dns=<base64url> per hit name
                                (h000..h099), the list h2load -i cycles through for GET
  doh_queries.py check FILE   : exit 0 when FILE (a DoH response body) is a NOERROR answer
                                holding A 203.0.113.1, else print why and exit 1
"""
import base64, struct, sys


def query(name):
    wire = struct.pack(">HHHHHH", 0, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        wire += bytes([len(label)]) + label.encode()
    return wire + b"\x00" + struct.pack(">HH", 1, 1)


def make(out, url):
    with open(f"{out}/query.bin", "wb") as f:
        f.write(query("h000.bench.example"))
    with open(f"{out}/get-uris.txt", "w") as f:
        for i in range(100):
            q = base64.urlsafe_b64encode(query(f"h{i:03d}.bench.example")).rstrip(b"=").decode()
            f.write(f"{url}?dns={q}\n")


def check(path):
    with open(path, "rb") as f:
        body = f.read()
    if len(body) < 12:
        return f"{len(body)}-byte body, not a DNS message"
    flags, _qd, ancount = struct.unpack(">HHH", body[2:8])
    if not flags & 0x8000:
        return "not a response"
    if flags & 0x000F:
        return f"rcode {flags & 0x000F}"
    if ancount == 0 or bytes([203, 0, 113, 1]) not in body[12:]:
        return "no A 203.0.113.1 in the answer"
    return None


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "make":
        make(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 3 and sys.argv[1] == "check":
        why = check(sys.argv[2])
        if why:
            print(why)
            sys.exit(1)
    else:
        sys.exit(__doc__)
