"""Drover's Python worker against Celery (Redis broker) on this machine, in one run.

1. Drain: 10,000 no-op tasks enqueued first, then one worker started; throughput is the tasks
   divided by the time from the first start to the last finish. Drover: one `python -m drover
   worker` process; Celery: `prefork` (one child per core) and `threads` pools.
2. End to end: the worker already running, each system's own producer submits 10,000 tasks
   (Drover: `submit_many` in batches of 1,000; Celery: `delay()` one by one); from the first
   submit to the last finish.
3. Latency: 1,000 tasks paced at 100/s, one submit each; p50 and p99 from enqueue to finish.

Run with `bash bench/python/run.sh` (it builds the release binary and a virtualenv).
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import redis

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
BIN = os.environ.get("DROVER_BIN", os.path.join(ROOT, "target", "release", "drover"))
REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/15")
N = int(os.environ.get("BENCH_TASKS", "10000"))
TOKEN = "drover_" + "be" * 32
CORES = os.cpu_count() or 2

sys.path.insert(0, HERE)


def wait_for(what, f, within=300.0, pause=0.05):
    deadline = time.monotonic() + within
    while True:
        v = f()
        if v:
            return v
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(pause)


# ---- Drover ----


class DroverServer:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="drover-bench-")
        with open(os.path.join(self.dir, "admin.token"), "w") as f:
            f.write(TOKEN + "\n")
        self.proc = subprocess.Popen(
            [BIN, "server", "--listen", "127.0.0.1:0", "--store",
             f"sqlite://{self.dir}/drover.db", "--data-dir", self.dir],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=dict(os.environ, RUST_LOG="warn"),
        )
        for raw in self.proc.stdout:
            line = raw.decode()
            if "listening on" in line:
                self.url = next(w for w in line.split() if w.startswith("http://"))
                break
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()
        from drover import Client

        self.client = Client(self.url, token=TOKEN, timeout=120)

    def worker(self):
        env = dict(os.environ, DROVER_SERVER=self.url, DROVER_TOKEN=TOKEN, PYTHONPATH=HERE)
        return subprocess.Popen(
            [sys.executable, "-m", "drover", "worker", "drover_app:worker", "--name", "bench-py"],
            env=env, cwd=HERE, stdin=subprocess.DEVNULL,
        )

    def submit(self, n, start=0):
        ids = []
        for i in range(start, n, 1000):
            ids += [h.id for h in self.client.submit_many("noop_py", range(i, min(n, i + 1000)))]
        return ids

    def times(self, ids):
        """(created, started, finished) per task, from the server's records."""
        from drover.client import TERMINAL

        out = []
        want = set(ids)
        cursor = None
        while want:
            page = self.client._request("GET", "/v1/tasks", query={"limit": 1000, "cursor": cursor})
            for t in page["tasks"]:
                if t["id"] in want and t["state"] in TERMINAL:
                    want.discard(t["id"])
                    out.append((iso(t["created_at"]), iso(t["started_at"]), iso(t["finished_at"])))
            cursor = page.get("next_cursor")
            if not cursor:
                break
        return out

    def done_count(self):
        stats = self.client._request("GET", "/v1/stats")["tasks_by_state"]
        return stats.get("succeeded", 0)

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def iso(s):
    from datetime import datetime

    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp() if s else None


def stop(proc):
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def drover_drain():
    s = DroverServer()
    try:
        ids = s.submit(N)
        w = s.worker()
        wait_for("the drain", lambda: s.done_count() >= N, pause=0.1)
        stop(w)
        t = s.times(ids)
        first = min(x[1] for x in t)
        last = max(x[2] for x in t)
        return N / (last - first)
    finally:
        s.stop()


def drover_e2e_and_latency():
    s = DroverServer()
    try:
        w = s.worker()
        wait_for("the worker", lambda: s.client._request("GET", "/v1/workers")["workers"])
        t0 = time.time()
        s.submit(N)
        wait_for("the end-to-end run", lambda: s.done_count() >= N, pause=0.02)
        e2e = N / (time.time() - t0)
        # Paced: 100/s, one submit each.
        ids = []
        start = time.monotonic()
        for i in range(1000):
            target = start + i / 100
            delay = target - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            ids.append(s.client.submit("noop_py", i).id)
        wait_for("the paced run", lambda: s.done_count() >= N + 1000, pause=0.05)
        lat = sorted((x[2] - x[0]) * 1000 for x in s.times(ids))
        stop(w)
        return e2e, pct(lat, 50), pct(lat, 99)
    finally:
        s.stop()


# ---- Celery ----


def celery_worker(pool, concurrency):
    env = dict(os.environ, PYTHONPATH=HERE)
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "celery_app", "worker", "-P", pool, "-c",
         str(concurrency), "--without-gossip", "--without-mingle", "--without-heartbeat",
         "-l", "warning"],
        env=env, cwd=HERE, stdin=subprocess.DEVNULL,
    )


def celery_stats(r):
    n, first, last = 0, None, None
    for key in r.scan_iter("bench:stats:*"):
        h = r.hgetall(key)
        n += int(h[b"n"])
        f, l = float(h[b"first"]), float(h[b"last"])
        first = f if first is None else min(first, f)
        last = l if last is None else max(last, l)
    return n, first, last


def celery_enqueue(n):
    from celery_app import noop

    for i in range(n):
        noop.delay(i)


def celery_drain(pool, concurrency):
    r = redis.Redis.from_url(REDIS)
    r.flushdb()
    celery_enqueue(N)
    w = celery_worker(pool, concurrency)
    try:
        wait_for(f"celery {pool} drain", lambda: celery_stats(r)[0] >= N, pause=0.1)
        n, first, last = celery_stats(r)
        return N / (last - first)
    finally:
        stop(w)


def celery_e2e_and_latency(pool, concurrency):
    from celery_app import stamp

    r = redis.Redis.from_url(REDIS)
    r.flushdb()
    w = celery_worker(pool, concurrency)
    try:
        # Started: one task through.
        stamp.delay(time.time())
        wait_for("celery to start", lambda: r.llen("bench:latency") >= 1)
        r.delete("bench:latency")
        for key in r.scan_iter("bench:stats:*"):
            r.delete(key)
        time.sleep(0.2)
        for key in r.scan_iter("bench:stats:*"):
            r.delete(key)
        t0 = time.time()
        celery_enqueue(N)
        wait_for("celery end to end", lambda: celery_stats(r)[0] >= N, pause=0.02)
        e2e = N / (time.time() - t0)
        start = time.monotonic()
        for i in range(1000):
            target = start + i / 100
            delay = target - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            stamp.delay(time.time())
        wait_for("celery paced", lambda: r.llen("bench:latency") >= 1000)
        lat = sorted(float(x) * 1000 for x in r.lrange("bench:latency", 0, -1))
        return e2e, pct(lat, 50), pct(lat, 99)
    finally:
        stop(w)


def pct(xs, p):
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))]


def main():
    results = {}
    only = os.environ.get("BENCH_ONLY", "")
    print(f"{N} no-op tasks, {CORES} cores", flush=True)
    runs = [
        ("drover", drover_drain, drover_e2e_and_latency),
        (f"celery prefork x{CORES}", lambda: celery_drain("prefork", CORES),
         lambda: celery_e2e_and_latency("prefork", CORES)),
        ("celery threads x8", lambda: celery_drain("threads", 8),
         lambda: celery_e2e_and_latency("threads", 8)),
    ]
    for name, drain, e2e in runs:
        if only and only not in name:
            continue
        d = drain()
        print(f"{name:22} drain {d:9.0f} tasks/s", flush=True)
        e, p50, p99 = e2e()
        print(f"{name:22} end to end {e:9.0f} tasks/s   paced 100/s p50 {p50:7.1f} ms  p99 {p99:7.1f} ms", flush=True)
        results[name] = {"drain": d, "e2e": e, "p50_ms": p50, "p99_ms": p99}
    celery = [v["drain"] for k, v in results.items() if k.startswith("celery")]
    if "drover" in results and celery:
        print(f"drain: drover / best celery pool = {results['drover']['drain'] / max(celery):.1f}x")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
