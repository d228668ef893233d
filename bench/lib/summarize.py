#!/usr/bin/env python3
"""Summarize results directories (results.jsonl) into markdown tables.

usage: summarize.py DIR [DIR...]           main table
       summarize.py --readme DIR [DIR...]  the README's performance table, and rind against Unbound
       summarize.py --detail DIR [DIR...]  secondary table (CPU, upstream, memory, tails)

Each DIR is one invocation of run.sh ("a run"). Within a run, a metric is the median over its
rounds; across runs, the value shown is the median of the per-run values (with 2 runs: their
mean). QPS columns also show the per-run values in brackets, in the order the DIRs were given.
"""
import json, os, statistics, sys
from collections import OrderedDict

NCPU = os.cpu_count() or 2


def load(d):
    with open(f"{d}/results.jsonl") as f:
        return [json.loads(l) for l in f if l.strip()]


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def sc(r, s, k):
    return (r.get(s) or {}).get(k)


# ---- metric extractors: row -> value (None if n/a)
def per_query(s, num_key):
    def f(r):
        n, done = sc(r, s, num_key), sc(r, s, "completed")
        return None if n is None or not done else n / done * 1e6
    return f


def upq(s):
    def f(r):
        u, sent = sc(r, s, "upstream_queries"), sc(r, s, "sent")
        return None if u is None or not sent else u / sent
    return f


def lost_pct(r):
    sent = sc(r, "miss", "sent")
    return None if not sent else (sc(r, "miss", "lost") or 0) / sent * 100


def unattributed_pct(r):
    v = []
    for s in ("hit", "miss"):
        d = r.get(s) or {}
        if d.get("dnsperf_wall_s"):
            v.append(max(0.0, d.get("other_cpu_s", 0)) / (d["dnsperf_wall_s"] * NCPU) * 100)
    return max(v) if v else None


M = {
    "hit_qps": lambda r: sc(r, "hit", "qps"),
    "hit_avg": lambda r: sc(r, "hit", "avg_lat_s"),
    "hit_p99": lambda r: sc(r, "hit", "p99_lat_s"),
    "hit_p999": lambda r: sc(r, "hit", "p999_lat_s"),
    "lat_p50": lambda r: sc(r, "lat", "p50_lat_s"),
    "lat_p99": lambda r: sc(r, "lat", "p99_lat_s"),
    "lat_avg": lambda r: sc(r, "lat", "avg_lat_s"),
    "miss_qps": lambda r: sc(r, "miss", "qps"),
    "miss_avg": lambda r: sc(r, "miss", "avg_lat_s"),
    "miss_p99": lambda r: sc(r, "miss", "p99_lat_s"),
    "miss_lost": lost_pct,
    "up_hit": upq("hit"),
    "up_miss": upq("miss"),
    "rss_start": lambda r: r.get("rss_kb_start"),
    "rss_hit": lambda r: r.get("rss_kb_after_hit"),
    "rss_end": lambda r: r.get("rss_kb_end"),
    "cpu_hit": per_query("hit", "peer_cpu_s"),
    "cpu_miss": per_query("miss", "peer_cpu_s"),
    "ucpu_miss": per_query("miss", "upstream_cpu_s"),
    "pcpu_hit": per_query("hit", "dnsperf_cpu_s"),
    "noise": unattributed_pct,
}


def aggregate(runs, peer, key):
    """(median over runs of per-run medians, [per-run medians])"""
    per_run = []
    for rows in runs:
        rs = [r for r in rows if r["peer"] == peer]
        per_run.append(med([M[key](r) for r in rs]) if rs else None)
    return med(per_run), per_run


def f_qps(v, per_run):
    if v is None:
        return "—"
    pr = [p for p in per_run if p is not None]
    if len(pr) > 1:
        return f"{v/1000:.1f}k ({'/'.join(f'{p/1000:.1f}' for p in pr)})"
    return f"{v/1000:.1f}k"


def f_ms(v, digits=2):
    return "—" if v is None else f"{v*1000:.{digits}f}"


def f_num(v, fmt):
    return "—" if v is None else format(v, fmt)


def notes_for(runs, peer):
    notes = []
    for i, rows in enumerate(runs):
        for r in (r for r in rows if r["peer"] == peer):
            where = f"run {i+1} round {r['round']}"
            if not r.get("ok"):
                notes.append(f"{peer} ({where}): did not start/answer")
            if r.get("died_during"):
                notes.append(f"{peer} ({where}): died during {r['died_during']}")
            if r.get("wildcard_ok") is False:
                notes.append(f"{peer} ({where}): wildcard check failed")
            for s in ("hit", "lat", "miss"):
                d = r.get(s) or {}
                if d.get("sent") and d.get("noerror", 0) < d.get("completed", 0):
                    notes.append(f"{peer} ({where}) {s}: rcodes {d.get('rcodes')}")
                if d.get("dnsperf_rc") not in (None, 0):
                    notes.append(f"{peer} ({where}) {s}: dnsperf exit {d.get('dnsperf_rc')}")
            u = upq("hit")(r)
            if peer not in ("knot", "echo") and u is not None and u > 0.01:
                notes.append(f"{peer} ({where}): {u:.2f} upstream queries per cache-hit query")
    return notes


def readme(runs, peers):
    """The table README.md shows, and how rind compares with Unbound in the same run."""
    print("| peer | hit QPS | @10k QPS p50 / p99 ms | miss QPS | RSS after run MiB | CPU µs/query hit / miss |")
    print("|---|---|---|---|---|---|")
    agg = {}
    notes = []
    for p in peers:
        ver = next(r.get("version", "?") for rows in runs for r in rows if r["peer"] == p)
        a = {k: aggregate(runs, p, k)[0] for k in M}
        agg[p] = a
        rss = "—" if a["rss_end"] is None else format(a["rss_end"] / 1024, ".1f")
        qps = lambda v: "—" if v is None else f"{v/1000:.1f}k"
        print(f"| {ver} | {qps(a['hit_qps'])} | {f_ms(a['lat_p50'], 3)} / {f_ms(a['lat_p99'])} | "
              f"{qps(a['miss_qps'])} | {rss} | {f_num(a['cpu_hit'], '.1f')} / {f_num(a['cpu_miss'], '.1f')} |")
        notes += notes_for(runs, p)
    r, u = agg.get("rind"), agg.get("unbound")
    if r and u:
        def ratio(k):
            return "—" if not r.get(k) or not u.get(k) else f"{r[k] / u[k]:.2f}×"
        print()
        print(f"Against Unbound in the same run: cache hits {ratio('hit_qps')}, "
              f"CPU per hit {ratio('cpu_hit')}, cache misses {ratio('miss_qps')}.")
    if notes:
        print()
        for n in notes:
            print(f"- {n}")


def main():
    args = sys.argv[1:]
    mode = "main"
    if args and args[0] in ("--sweep", "--detail", "--readme"):
        mode, args = args[0][2:], args[1:]
    runs = [load(d) for d in args]
    peers = list(OrderedDict.fromkeys(r["peer"] for rows in runs for r in rows))

    if mode == "readme":
        readme(runs, peers)
        return

    if mode == "sweep":
        rows = [r for rs in runs for r in rs]
        groups = OrderedDict()
        for r in rows:
            groups.setdefault((r["peer"], r.get("threads"), r.get("clients"), r.get("outstanding")), []).append(r)
        print("| peer | -T | -c | -q | hit QPS median (reps) | avg / p99 ms | peer CPU µs/q | dnsperf CPU µs/q |")
        print("|---|---|---|---|---|---|---|---|")
        for (peer, t, c, q), rs in groups.items():
            qs = [M["hit_qps"](r) for r in rs]
            print(f"| {peer} | {t} | {c} | {q} | {f_qps(med(qs), qs)} | "
                  f"{f_ms(med([M['hit_avg'](r) for r in rs]))} / {f_ms(med([M['hit_p99'](r) for r in rs]))} | "
                  f"{f_num(med([M['cpu_hit'](r) for r in rs]), '.1f')} | "
                  f"{f_num(med([M['pcpu_hit'](r) for r in rs]), '.1f')} |")
        return

    if mode == "detail":
        print("| peer | RSS MiB start / after hit / after miss | peer CPU µs per hit query | peer CPU µs per miss query "
              "| upstream CPU µs per miss | dnsperf CPU µs per hit query | hit p99.9 ms | unattributed CPU % |")
        print("|---|---|---|---|---|---|---|---|")
        for p in peers:
            a = {k: aggregate(runs, p, k)[0] for k in M}
            rss = "/".join("—" if a[k] is None else f"{a[k]/1024:.1f}" for k in ("rss_start", "rss_hit", "rss_end"))
            print(f"| {p} | {rss} | {f_num(a['cpu_hit'], '.1f')} | {f_num(a['cpu_miss'], '.1f')} | "
                  f"{'—' if p in ('knot', 'echo') else f_num(a['ucpu_miss'], '.1f')} | {f_num(a['pcpu_hit'], '.1f')} | "
                  f"{f_ms(a['hit_p999'])} | {f_num(a['noise'], '.0f')} |")
        return

    print("| peer | version | hit QPS | hit avg / p99 ms | @10k qps p50 / p99 ms | miss QPS | miss avg / p99 ms "
          "| miss lost | upstream q per query hit / miss | RSS after run MiB | peer CPU µs/query hit / miss |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    notes = []
    for p in peers:
        ver = next(r.get("version", "?") for rows in runs for r in rows if r["peer"] == p)
        a, pr = {}, {}
        for k in M:
            a[k], pr[k] = aggregate(runs, p, k)
        fw = p not in ("knot", "echo")
        print(f"| {p} | {ver} | {f_qps(a['hit_qps'], pr['hit_qps'])} | {f_ms(a['hit_avg'])} / {f_ms(a['hit_p99'])} | "
              f"{f_ms(a['lat_p50'], 3)} / {f_ms(a['lat_p99'])} | {f_qps(a['miss_qps'], pr['miss_qps'])} | "
              f"{f_ms(a['miss_avg'])} / {f_ms(a['miss_p99'])} | {f_num(a['miss_lost'], '.2f')}% | "
              f"{f_num(a['up_hit'] if fw else None, '.3f')} / {f_num(a['up_miss'] if fw else None, '.2f')} | "
              f"{'—' if a['rss_end'] is None else format(a['rss_end'] / 1024, '.1f')} | "
              f"{f_num(a['cpu_hit'], '.1f')} / {f_num(a['cpu_miss'], '.1f')} |")
        notes += notes_for(runs, p)
    if notes:
        print()
        for n in notes:
            print(f"- {n}")


if __name__ == "__main__":
    main()
