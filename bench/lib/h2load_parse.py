#!/usr/bin/env python3
"""Parse one h2load run's stdout into JSON (one object on stdout), with the same key names as
dnsperf_parse.py where they mean the same: qps (requests per second), sent (requests
started), completed (h2load's succeeded: done with a 2xx/3xx status), plus h2load's own counts (done,
failed, errored, timeout, status_2xx..status_5xx) and the mean time per request.
"""
import json, re, sys

res = {}
with open(sys.argv[1], errors="replace") as f:
    text = f.read()
m = re.search(r"^finished in ([\d.]+)s, ([\d.]+) req/s", text, re.M)
if m:
    res["runtime_s"] = float(m.group(1))
    res["qps"] = float(m.group(2))
m = re.search(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
              r"(\d+) errored, (\d+) timeout", text, re.M)
if m:
    total, started, done, ok, failed, errored, tmo = map(int, m.groups())
    res.update(total=total, sent=started, done=done, succeeded=ok, completed=ok, failed=failed,
               errored=errored, timeout=tmo)
m = re.search(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text, re.M)
if m:
    for k, v in zip(("status_2xx", "status_3xx", "status_4xx", "status_5xx"), m.groups()):
        res[k] = int(v)
m = re.search(r"^time for request:\s+(\S+)\s+(\S+)\s+(\S+)", text, re.M)
if m:
    res["mean_request_time"] = m.group(3)
json.dump(res, sys.stdout)
