"""Schemathesis hooks for openapi.sh: keep every blocklist fetch on loopback.

A generated blocklist URL would make rind fetch from whatever host the fuzzer made up, so
any body whose "url" rind would accept as http(s) is pointed at the list the script serves
on 127.0.0.1 (RIND_LIST_URL). Other URLs stay as generated: rind refuses them unfetched.
"""
import os
import re

import schemathesis

LIST_URL = os.environ["RIND_LIST_URL"]

# URL parsers drop tabs and newlines anywhere and spaces at the ends before reading the
# scheme, and accept "http:host" without slashes: match what they would see.
FETCHABLE = re.compile(r"^\s*https?:", re.IGNORECASE)


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("url"), str):
        seen = re.sub(r"[\t\n\r]", "", body["url"])
        if FETCHABLE.match(seen) or "://" in seen:
            body["url"] = LIST_URL
