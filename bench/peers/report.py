"""Medians of bench/peers runs: one Markdown table on stdout, the raw runs and medians as JSON."""

import argparse
import json
import statistics

p = argparse.ArgumentParser()
p.add_argument("--raw", required=True)
p.add_argument("--load", required=True)
p.add_argument("--versions", required=True)
p.add_argument("--tasks", type=int, required=True)
p.add_argument("--cores", type=int, required=True)
p.add_argument("--out", required=True)
a = p.parse_args()

runs = [json.loads(line) for line in open(a.raw) if line.strip()]
load = [float(x) for x in open(a.load).read().split()] or [0.0]
versions = json.loads(a.versions)

ROWS = [  # (label, redis, result key for (a), name in the table)
    ("drover-node", "", "sequential", "Drover, SQLite durable — Node client (http keep-alive), 2 `drover worker` (Rust, noop)"),
    ("bullmq", "mem", "sequential", "BullMQ, Redis no persistence — 2 Worker processes × concurrency 64"),
    ("bullmq", "aof", "sequential", "BullMQ, Redis appendfsync always — same"),
    ("drover-py", "", "sequential", "Drover, SQLite durable — Python client (http.client keep-alive), 2 Python SDK workers"),
    ("drover-py", "", "sequential_sdk", "Drover — Python SDK `Client.submit` (urllib, a connection per request); (a) only"),
    ("celery", "mem", "sequential", "Celery, Redis no persistence — 2 `-P solo` worker processes"),
    ("celery", "aof", "sequential", "Celery, Redis appendfsync always — same"),
]


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def get(r, *path):
    for k in path:
        if r is None:
            return None
        r = r.get(k)
    return r


rates = sorted({int(k) for r in runs if r["result"] for k in (r["result"].get("paced") or {})})
medians = []
for label, redis, seq, name in ROWS:
    rs = [r["result"] for r in runs if r["label"] == label and r["redis"] == redis]
    ok = [r for r in rs if r]
    if not rs:
        continue
    row = {"system": name, "label": label, "redis": redis, "runs": len(ok), "failed": len(rs) - len(ok),
           "sequential": {k: med([get(r, seq, k) for r in ok]) for k in ("tasks_per_sec", "p50_ms", "p99_ms")}}
    if seq == "sequential":
        row["batch"] = {k: med([get(r, "batch", k) for r in ok])
                        for k in ("submit_tasks_per_sec", "end_to_end_tasks_per_sec")}
        row["batch"]["end_to_end_runs"] = [get(r, "batch", "end_to_end_tasks_per_sec") for r in ok]
        row["paced"] = {str(rt): {k: med([get(r, "paced", str(rt), k) for r in ok])
                                  for k in ("p50_ms", "p99_ms", "max_ms", "achieved_per_sec")} for rt in rates}
    medians.append(row)


def f(x, d=0):
    if x is None:
        return "–"
    return f"{x:,.{d}f}"


def ms(x):
    if x is None:
        return "–"
    return f"{x:.2f}" if x < 10 else f"{x:.1f}" if x < 100 else f"{x:,.0f}"


head = ["system", "(a) seq. submit tasks/s", "(a) p50 / p99 ms", f"(b) {a.tasks:,} in batches: submit tasks/s",
        "(b) end to end tasks/s"] + [f"(c) {rt}/s enqueue→start p50 / p99 / max ms" for rt in rates]
print()
print(f"Medians of {max([r['runs'] for r in medians] or [0])} runs; {a.cores} cores; load average "
      f"{min(load):.1f}–{max(load):.1f} (median {statistics.median(load):.1f}) during the run; "
      + ", ".join(f"{k} {v}" for k, v in versions.items()))
print()
print("| " + " | ".join(head) + " |")
print("|" + "---|" * len(head))
for r in medians:
    s = r["sequential"]
    cells = [r["system"] + (f" ({r['failed']} failed)" if r["failed"] else ""), f(s["tasks_per_sec"]),
             f"{ms(s['p50_ms'])} / {ms(s['p99_ms'])}"]
    if "batch" in r:
        cells += [f(r["batch"]["submit_tasks_per_sec"]), f(r["batch"]["end_to_end_tasks_per_sec"])]
        for rt in rates:
            c = r["paced"][str(rt)]
            cells.append(f"{ms(c['p50_ms'])} / {ms(c['p99_ms'])} / {ms(c['max_ms'])}")
    else:
        cells += ["", ""] + [""] * len(rates)
    print("| " + " | ".join(cells) + " |")
print()

json.dump({"versions": versions, "cores": a.cores, "tasks": a.tasks,
           "load_average": {"min": min(load), "median": statistics.median(load), "max": max(load), "samples": load},
           "medians": medians, "runs": runs}, open(a.out, "w"), indent=1)
