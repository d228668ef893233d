#!/usr/bin/env python3
"""A master file of N records (A, AAAA, TXT and MX in turn) under $ORIGIN bench.lan., on stdout.

usage: gen_zone.py N
"""
import sys

n = int(sys.argv[1])
print("$ORIGIN bench.lan.\n$TTL 300")
for i in range(n):
    kind = i % 4
    if kind == 0:
        print(f"h{i} A 10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
    elif kind == 1:
        print(f"h{i} AAAA fd00::{i >> 16:x}:{i & 0xffff:x}")
    elif kind == 2:
        print(f'h{i} 60 TXT "host {i}" "rack {i % 40}"')
    else:
        print(f"h{i} MX 10 mail{i % 100}")
