#!/usr/bin/env python3
"""Writes the seed corpora in corpus/<target>/ (run from anywhere; overwrites the seeds).

handler inputs are [flags, len_hi, len_lo, query, upstream reply] (see fuzz_targets/handler.rs);
tcp_framing inputs are a client's byte stream; doh_request inputs are a method byte, a shape
byte and a query string or body; record_json inputs are request bodies.
"""
import base64
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
A, NS, CNAME, SOA, PTR, MX, TXT, AAAA, SRV, OPT, ANY, CAA = 1, 2, 5, 6, 12, 15, 16, 28, 33, 41, 255, 257
DS, RRSIG, NSEC, DNSKEY = 43, 46, 47, 48
# The fuzz rig's clock starts here (fuzz/src/lib.rs START); signatures expire ten days on.
START = 1_700_000_000


def name(text):
    out = b""
    for label in text.strip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def header(ident, flags, qd=1, an=0, ns=0, ar=0):
    return struct.pack(">HHHHHH", ident, flags, qd, an, ns, ar)


def question(qname, qtype, qclass=1):
    return name(qname) + struct.pack(">HH", qtype, qclass)


def opt(payload=1232, version=0, do=False):
    flags = 0x8000 if do else 0
    return b"\0" + struct.pack(">HHBBHH", OPT, payload, 0, version, flags, 0)


def query(qname, qtype, ident=0x1234, rd=True, edns=None, opcode=0, cd=False, ad=False):
    flags = (opcode << 11) | (0x0100 if rd else 0) | (0x0020 if ad else 0) | (0x0010 if cd else 0)
    body = question(qname, qtype)
    if edns is None:
        return header(ident, flags) + body
    return header(ident, flags, ar=1) + body + opt(*edns)


def rr(owner, rtype, ttl, rdata):
    return name(owner) + struct.pack(">HHIH", rtype, 1, ttl, len(rdata)) + rdata


def rrsig(owner, covered, ttl=300, expires=START + 864_000):
    return rr(owner, RRSIG, ttl, struct.pack(">HBBIIIH", covered, 13, 2, ttl, expires, START, 0x1234)
              + name("example.") + b"\xab" * 64)


def response(qname, qtype, answers=(), authorities=(), rcode=0, ad=False):
    return (header(0, 0x8180 | (0x20 if ad else 0) | rcode, 1, len(answers), len(authorities))
            + question(qname, qtype) + b"".join(answers) + b"".join(authorities))


def a(owner, last, ttl=300):
    return rr(owner, A, ttl, bytes([192, 0, 2, last]))


SOA_EXAMPLE = rr("example.", SOA, 600, name("ns.example.") + name("admin.example.")
                 + struct.pack(">IIIII", 1, 3600, 600, 86400, 300))


def tsig_signed(q, key="xfr.", mac=b"\x5a" * 32, time=START):
    """q with a TSIG record appended (a MAC no key here verifies: the rig has no keys)."""
    rdata = (name("hmac-sha256.") + struct.pack(">HIH", time >> 32, time & 0xFFFFFFFF, 300)
             + struct.pack(">H", len(mac)) + mac + q[:2] + struct.pack(">HH", 0, 0))
    tsig = name(key) + struct.pack(">HHIH", 250, 255, 0, len(rdata)) + rdata
    arcount = struct.unpack(">H", q[10:12])[0] + 1
    return q[:10] + struct.pack(">H", arcount) + q[12:] + tsig


def ixfr(zone, serial):
    soa = rr(zone, SOA, 0, name("ns." + zone) + name("h." + zone) + struct.pack(">IIIII", serial, 1, 1, 1, 1))
    return header(0x4321, 0, ns=1) + question(zone, 251) + soa


def handler(flags, q, script=b""):
    return bytes([flags]) + struct.pack(">H", len(q)) + q + script


def write(target, seeds):
    folder = os.path.join(HERE, "corpus", target)
    os.makedirs(folder, exist_ok=True)
    for label, data in seeds.items():
        if isinstance(data, str):
            data = data.encode()
        with open(os.path.join(folder, label), "wb") as f:
            f.write(data)


TCP, OUTSIDE = 1, 2


def stale(steps):
    return steps << 2


write("handler", {
    "a-local": handler(0, query("www.home.lan", A)),
    "aaaa-local-edns": handler(0, query("WwW.Home.Lan", AAAA, edns=(1232,))),
    "a-wildcard": handler(0, query("x.wild.home.lan", A)),
    "cname-local": handler(0, query("alias.home.lan", A)),
    "cname-to-cache": handler(0, query("out.home.lan", A, edns=(4096,))),
    "cname-to-upstream": handler(0, query("far.home.lan", A), response("far.example", A, [a("far.example", 9)])),
    "mx": handler(0, query("home.lan", MX)),
    "ns": handler(0, query("home.lan", NS)),
    "caa": handler(0, query("home.lan", CAA)),
    "srv": handler(0, query("_sip._tcp.home.lan", SRV)),
    "ptr": handler(0, query("10.1.168.192.in-addr.arpa", PTR)),
    "txt": handler(0, query("txt.home.lan", TXT)),
    "txt-big-udp": handler(0, query("big.home.lan", TXT)),
    "txt-big-udp-edns-1232": handler(0, query("big.home.lan", TXT, edns=(1232,))),
    "txt-big-tcp": handler(TCP, query("big.home.lan", TXT)),
    "nodata-local": handler(0, query("www.home.lan", MX)),
    "any-local": handler(0, query("www.home.lan", ANY)),
    "cache-hit": handler(0, query("cached.example", A)),
    "cache-hit-case": handler(0, query("CaChEd.ExAmPlE", A, edns=(512,))),
    "cache-hit-big-edns-600": handler(0, query("big.example", A, edns=(600,))),
    "cache-hit-big-tcp": handler(TCP, query("big.example", A)),
    "cache-chain": handler(0, query("chain.example", A)),
    "cache-nxdomain": handler(0, query("nx.example", A)),
    "cache-nodata": handler(0, query("nodata.example", MX)),
    "cache-stale-upstream-fails": handler(stale(5), query("cached.example", A), b"\xff"),
    "cache-stale-upstream-answers": handler(stale(5), query("cached.example", A), response("cached.example", A, [a("cached.example", 7, 5)])),
    "cache-expired-past-stale": handler(stale(40), query("cached.example", A), b"\xff"),
    "forward-default": handler(0, query("forward.example", A)),
    "forward-answer-edns": handler(0, query("forward.example", A, edns=(1232, 0, True)),
                                   response("forward.example", A, [a("forward.example", i) for i in range(1, 4)])),
    "forward-nxdomain-soa": handler(0, query("missing.example", AAAA), response("missing.example", AAAA, [], [SOA_EXAMPLE], rcode=3)),
    "forward-big": handler(0, query("many.example", A), response("many.example", A, [a("many.example", i % 250) for i in range(100)])),
    "forward-servfail": handler(0, query("broken.example", A), response("broken.example", A, rcode=2)),
    "forward-truncated": handler(0, query("tc.example", A), header(0, 0x8380, 1) + question("tc.example", A)),
    "zone-notify": handler(0, query("home.lan", SOA, opcode=4)),
    "zone-axfr-tcp": handler(TCP, query("home.lan", 252)),
    "zone-axfr-udp": handler(0, query("home.lan", 252)),
    "zone-ixfr-tcp": handler(TCP, ixfr("home.lan", 7)),
    "zone-ixfr-udp-signed": handler(0, tsig_signed(ixfr("home.lan", 7))),
    "tsig-signed-query": handler(0, tsig_signed(query("www.home.lan", A, edns=(1232,)))),
    "tsig-signed-notify": handler(0, tsig_signed(query("home.lan", SOA, opcode=4))),
    "dnssec-cache-do": handler(0, query("signed.example", A, edns=(1232, 0, True))),
    "dnssec-cache-plain": handler(0, query("Signed.Example", A, edns=(1232,))),
    "dnssec-cache-cd-ad": handler(0, query("signed.example", A, edns=(1232, 0, True), cd=True, ad=True)),
    "dnssec-cache-nxdomain-do": handler(0, query("signed-nx.example", A, edns=(1232, 0, True))),
    "dnssec-cache-rrsig-type": handler(0, query("signed.example", RRSIG)),
    "dnssec-forward-cd": handler(0, query("fwd-signed.example", A, edns=(1232, 0, True), cd=True),
                                 response("fwd-signed.example", A, [a("fwd-signed.example", 3), rrsig("fwd-signed.example", A)], ad=True)),
    "dnssec-forward-expired": handler(0, query("old-sig.example", A, edns=(1232, 0, True)),
                                      response("old-sig.example", A, [a("old-sig.example", 4), rrsig("old-sig.example", A, expires=START - 1)])),
    "dnssec-forward-nxdomain": handler(0, query("gone.example", DS, edns=(1232, 0, True)),
                                       response("gone.example", DS, [], [SOA_EXAMPLE, rrsig("example.", SOA),
                                                rr("example.", NSEC, 300, name("z.example.") + b"\x00\x06\x02\x00\x00\x00\x00\x03"),
                                                rrsig("example.", NSEC)], rcode=3)),
    "dnssec-dnskey-stale": handler(stale(5), query("cached.example", DNSKEY, edns=(1232, 0, True), cd=True), b"\xff"),
    "localhost": handler(0, query("localhost", A)),
    "reverse-private": handler(0, query("1.0.168.192.in-addr.arpa", PTR)),
    "edns-version-1": handler(0, query("www.home.lan", A, edns=(1232, 1))),
    "edns-payload-100": handler(0, query("big.home.lan", TXT, edns=(100,))),
    "opcode-notify": handler(0, query("home.lan", SOA, opcode=4)),
    "opcode-update-no-question": handler(0, header(7, 5 << 11, qd=0)),
    "qr-set": handler(0, header(0x4242, 0x8100) + question("www.home.lan", A)),
    "two-questions": handler(0, header(9, 0x0100, qd=2) + question("a.lan", A) + question("b.lan", A)),
    "no-question": handler(0, header(9, 0x0100, qd=0)),
    "short": handler(0, b"\x12\x34\x01"),
    "garbage": handler(0, bytes(range(7, 80, 3))),
    "outsider": handler(OUTSIDE, query("www.home.lan", A)),
    "compressed-question": handler(0, header(5, 0x0100) + b"\xc0\x0c\x00\x01\x00\x01"),
})

framed = lambda m: struct.pack(">H", len(m)) + m
write("tcp_framing", {
    "one": framed(query("www.home.lan", A)),
    "pipelined": b"".join(framed(query(n, t, ident=i)) for i, (n, t) in enumerate(
        [("www.home.lan", A), ("cached.example", A), ("forward.example", A), ("big.home.lan", TXT), ("nx.example", A)])),
    "same-id-twice": framed(query("www.home.lan", A, ident=1)) + framed(query("cached.example", A, ident=1)),
    "edns": framed(query("big.example", A, edns=(4096,))),
    "short-prefix-then-query": struct.pack(">H", 3) + b"abc" + framed(query("www.home.lan", A)),
    "cut-frame": framed(query("www.home.lan", A))[:-4],
    "prefix-only": struct.pack(">H", 512),
    "half-prefix": b"\x00",
    "dropped-then-answered": framed(header(1, 0x8100) + question("a.lan", A)) + framed(query("www.home.lan", A, ident=2)),
    "formerr-and-notimp": framed(header(3, 0x0100, qd=2)) + framed(query("home.lan", SOA, ident=4, opcode=4)),
})

# doh_request: method byte (0 GET, 1 POST, 2 PUT), shape byte (bit 0: wrong path; bits 1-2:
# content type 0 dns-message, 1 with a parameter, 2 text/plain), then query string or body.
b64 = lambda m: base64.urlsafe_b64encode(m).rstrip(b"=")
write("doh_request", {
    "get": b"\x00\x00dns=" + b64(query("www.home.lan", A, ident=0)),
    "get-padded-other-params": b"\x00\x00ct=x&dns=" + base64.urlsafe_b64encode(query("cached.example", A, ident=0)),
    "get-no-dns": b"\x00\x00name=www.home.lan",
    "get-bad-base64": b"\x00\x00dns=%%%",
    "get-forward": b"\x00\x00dns=" + b64(query("forward.example", A, ident=0)),
    "post": b"\x01\x00" + query("www.home.lan", A, ident=0),
    "post-param": b"\x01\x02" + query("big.home.lan", TXT, ident=7),
    "post-text": b"\x01\x04" + query("www.home.lan", A),
    "post-short": b"\x01\x00\x12\x34\x01",
    "post-response": b"\x01\x00" + header(0, 0x8100) + question("a.lan", A),
    "post-formerr": b"\x01\x00" + header(3, 0x0100, qd=2),
    "other-path": b"\x00\x01dns=" + b64(query("www.home.lan", A, ident=0)),
    "put": b"\x02\x00" + query("www.home.lan", A),
})

write("record_json", {
    "a": json.dumps({"name": "nas.home.lan", "type": "A", "data": "192.168.1.10"}),
    "aaaa": json.dumps({"name": "nas.home.lan.", "type": "aaaa", "ttl": 60, "data": "FD00::0010"}),
    "cname": json.dumps({"name": "www.home.lan", "type": "CNAME", "ttl": 0, "data": "nas.home.lan"}),
    "mx": json.dumps({"name": "home.lan", "type": "MX", "data": "10 mail.home.lan"}),
    "mx-null": json.dumps({"name": "home.lan", "type": "MX", "data": "0 ."}),
    "txt-quoted": json.dumps({"name": "home.lan", "type": "TXT", "data": "\"v=spf1 -all\" \"say \\\"hi\\\" \\065\\200\""}),
    "txt-long": json.dumps({"name": "k._domainkey.home.lan", "type": "TXT", "data": "p=" + "A" * 400}),
    "srv": json.dumps({"name": "_sip._tcp.home.lan", "type": "SRV", "ttl": "600", "data": "10 5 5060 sip.home.lan"}),
    "ptr": json.dumps({"name": "10.1.168.192.in-addr.arpa", "type": "PTR", "data": "nas.home.lan"}),
    "ns": json.dumps({"name": "sub.home.lan", "type": "NS", "data": "ns1.home.lan."}),
    "caa": json.dumps({"name": "home.lan", "type": "CAA", "data": "0 issue \"letsencrypt.org; account=1\""}),
    "caa-iodef": json.dumps({"name": "home.lan", "type": "CAA", "data": "128 iodef \"mailto:sec@home.lan\""}),
    "wildcard-idna": json.dumps({"name": "*.b\u00fccher.lan", "type": "A", "data": "10.0.0.1"}),
    "seed-aliases": json.dumps({"Host": "old.home.lan", "Type": "A", "TTL": 3600, "Data": "10.0.0.2"}),
    "with-id": json.dumps({"id": "01hzy8k5d1v7r3c2x9m4n6q8tb", "name": "x.lan", "type": "A", "data": "10.0.0.3"}),
    "unknown-field": json.dumps({"name": "x.lan", "type": "A", "data": "10.0.0.3", "weight": 1}),
    "ttl-huge": '{"name": "x.lan", "type": "A", "ttl": 99999999999999999999, "data": "10.0.0.3"}',
    "empty": "  ",
    "not-json": "{name: x}",
})
