"""Drover (REST from Python, keep-alive; Python SDK workers) beside Celery (Redis broker).

    python bench/peers/py.py --system drover|celery [--broker URL --metrics URL] [--tasks 20000]

One run of one system on the three workloads: (a) sequential durable submits, (b) a backlog
submitted in batches and drained by 2 worker processes, (c) paced submits at each rate,
enqueue -> handler start. Prints one JSON line. Every process it starts is ended by pid when it
exits. Run through `bash bench/peers/run.sh` (it starts Redis, builds drover, makes the venv).
"""

import argparse
import atexit
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
TOKEN = "drover_" + "be" * 32

p = argparse.ArgumentParser()
p.add_argument("--system", default="drover")
p.add_argument("--broker", default="")
p.add_argument("--metrics", default="")
p.add_argument("--tasks", type=int, default=20000)
p.add_argument("--batch", type=int, default=1000)
p.add_argument("--seq-tasks", type=int, default=1000)
p.add_argument("--seq-seconds", type=float, default=10)
p.add_argument("--rates", default="100,500")
p.add_argument("--paced-seconds", type=float, default=3)
p.add_argument("--workers", type=int, default=2)
p.add_argument("--timeout", type=float, default=120)
opt = p.parse_args()

# ---- processes started here, ended by pid ----
CHILDREN = []


def start(argv, **kw):
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, **kw)
    CHILDREN.append(proc)
    return proc


def end_children():
    for c in reversed(CHILDREN):  # workers before their server
        if c.poll() is None:
            c.kill()
            c.wait()


atexit.register(end_children)
for sig in (signal.SIGTERM, signal.SIGHUP):
    signal.signal(sig, lambda *_: sys.exit(130))
# A hard bound on the whole run: SIGALRM ends it (atexit then ends the children).
signal.signal(signal.SIGALRM, lambda *_: sys.exit(f"py.py: run exceeded {opt.timeout * 4:.0f}s"))
signal.alarm(int(opt.timeout * 4))


def wait_for(what, f, pause=0.01, within=None):
    deadline = time.monotonic() + (within or opt.timeout)
    while True:
        v = f()
        if v:
            return v
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(pause)


def pct(xs, q):
    s = sorted(xs)
    return s[min(len(s) - 1, int(len(s) * q / 100))] if s else None


def rnd(x, d=2):
    return None if x is None else round(x, d)


# ---- timed workloads, the same code for both systems ----


def sequential(submit_one):
    """(a) One client, one task per request, each acknowledged before the next."""
    lat = []
    t0 = time.perf_counter()
    deadline = t0 + opt.seq_seconds
    for i in range(opt.seq_tasks):
        if time.perf_counter() > deadline:
            break
        t = time.perf_counter()
        submit_one(i)
        lat.append((time.perf_counter() - t) * 1000)
    secs = time.perf_counter() - t0
    return {"tasks": len(lat), "tasks_per_sec": rnd(len(lat) / secs, 1),
            "p50_ms": rnd(pct(lat, 50), 3), "p99_ms": rnd(pct(lat, 99), 3)}


def paced(rate, submit_one):
    """(c) Open loop: each submit leaves at its time (a pool of 16 client threads), not after
    the previous answer. Returns [(t0, handle)], t0 the client's clock just before the request."""
    n = round(rate * opt.paced_seconds)
    sent = []
    lock = threading.Lock()

    def one(i):
        t0 = time.time()
        h = submit_one(i, t0)
        with lock:
            sent.append((t0, h))

    begin = time.perf_counter() + 0.02
    futures = []
    with ThreadPoolExecutor(16) as pool:
        for i in range(n):
            target = begin + i / rate
            while True:
                d = target - time.perf_counter()
                if d <= 0:
                    break
                time.sleep(d if d < 0.002 else d - 0.001)
            futures.append(pool.submit(one, i))
        for f in futures:
            f.result()
    return sent, n / (time.perf_counter() - begin)


def summary(lat):
    return {"n": len(lat), "p50_ms": rnd(pct(lat, 50), 3), "p99_ms": rnd(pct(lat, 99), 3),
            "max_ms": rnd(max(lat), 3)}


# ---- Drover: REST over keep-alive connections (one per thread), Python SDK workers ----


def iso(s):
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


class Rest:
    def __init__(self, url):
        u = urllib.parse.urlsplit(url)
        self.host, self.port = u.hostname, u.port
        self.local = threading.local()

    def __call__(self, method, path, body=None):
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        headers = {"authorization": f"Bearer {TOKEN}", "accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["content-type"] = "application/json"
        conn.request(method, path, data, headers)
        resp = conn.getresponse()
        text = resp.read()
        if resp.status >= 300:
            raise SystemExit(f"{method} {path}: {resp.status} {text[:300]!r}")
        return json.loads(text) if text else None


def drover():
    bin_ = os.environ["DROVER_BIN"]
    d = tempfile.mkdtemp(prefix="drover-peers-")
    with open(os.path.join(d, "admin.token"), "w") as f:
        f.write(TOKEN + "\n")
    server = start([bin_, "server", "--listen", "127.0.0.1:0", "--store", f"sqlite://{d}/drover.db",
                    "--data-dir", d, "--rate-limit", "0"],
                   stdout=subprocess.PIPE, env=dict(os.environ, RUST_LOG="warn"))
    url = None
    for raw in server.stdout:
        line = raw.decode()
        if "listening on" in line:
            url = next(w for w in line.split() if w.startswith("http://"))
            break
    if not url:
        raise SystemExit("drover server did not start")
    threading.Thread(target=lambda: [None for _ in server.stdout], daemon=True).start()
    rest = Rest(url)
    body = {"kind": "noop_py"}
    submit_one = lambda i, t0=None: rest("POST", "/v1/tasks", body)["id"]  # noqa: E731

    out = {"system": "drover", "client": "python http.client keep-alive"}
    out["sequential"] = sequential(submit_one)
    # The SDK's own Client (urllib: a new connection per request), for reference.
    from drover import Client

    sdk = Client(url, token=TOKEN)
    out["sequential_sdk"] = sequential(lambda i: sdk.submit("noop_py"))

    env = dict(os.environ, DROVER_SERVER=url, DROVER_TOKEN=TOKEN, PYTHONPATH=HERE)
    for i in range(opt.workers):
        start([sys.executable, "-m", "drover", "worker", "drover_app:worker", "--name", f"peers-py-{i}"],
              env=env, cwd=HERE, stdout=sys.stderr)
    wait_for("the workers", lambda: len(rest("GET", "/v1/workers")["workers"]) >= opt.workers, 0.05)
    base = out["sequential"]["tasks"] + out["sequential_sdk"]["tasks"]

    def succeeded():
        return rest("GET", "/v1/stats")["tasks_by_state"].get("succeeded", 0)

    wait_for("the sequential tasks", lambda: succeeded() >= base, 0.02)

    t0 = time.time()
    ids = []
    for i in range(0, opt.tasks, opt.batch):
        tasks = [body] * min(opt.batch, opt.tasks - i)
        ids += rest("POST", "/v1/tasks:batch", {"tasks": tasks})["ids"]
    submitted = time.time()
    wait_for("the drain", lambda: succeeded() >= base + opt.tasks, 0.02)
    want, last, cursor = set(ids), 0.0, None
    while True:
        q = "/v1/tasks?state=succeeded&limit=1000" + (f"&cursor={urllib.parse.quote(cursor)}" if cursor else "")
        page = rest("GET", q)
        for t in page["tasks"]:
            if t["id"] in want:
                last = max(last, iso(t["finished_at"]))
        cursor = page.get("next_cursor")
        if not cursor:
            break
    out["batch"] = {"tasks": opt.tasks,
                    "submit_tasks_per_sec": rnd(opt.tasks / (submitted - t0), 1),
                    "end_to_end_tasks_per_sec": rnd(opt.tasks / (last - t0), 1)}

    out["paced"] = {}
    for rate in [int(r) for r in opt.rates.split(",")]:
        sent, achieved = paced(rate, submit_one)
        lat = []
        for t0, tid in sent:
            v = wait_for(f"task {tid}", lambda: (lambda v: v if v["state"] == "succeeded" else None)(
                rest("GET", f"/v1/tasks/{tid}")))
            lat.append((v["result"] - t0) * 1000)  # the handler's own start time
        out["paced"][str(rate)] = dict(summary(lat), achieved_per_sec=rnd(achieved, 1))
    return out


# ---- Celery ----


def celery():
    os.environ["PEERS_BROKER"] = opt.broker
    os.environ["PEERS_METRICS"] = opt.metrics
    sys.path.insert(0, HERE)
    import redis
    from celery import group

    from celery_app import app, noop, stamp

    broker, metrics = redis.Redis.from_url(opt.broker), redis.Redis.from_url(opt.metrics)
    broker.flushdb()
    metrics.flushdb()
    out = {"system": "celery", "client": "celery apply_async (kombu, redis-py)"}
    out["sequential"] = sequential(lambda i: noop.apply_async())
    broker.flushdb()  # (a) ran with no worker: start (b) on an empty queue

    for i in range(opt.workers):
        start([sys.executable, "-m", "celery", "-A", "celery_app", "worker", "-P", "solo",
               "-n", f"peers{i}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat",
               "-l", "warning"], env=dict(os.environ, PYTHONPATH=HERE), cwd=HERE, stdout=sys.stderr)
    # Ready: each process has run a task (and started its reporter).
    wait_for("the celery workers", lambda: (noop.apply_async(), time.sleep(0.1),
                                            len(metrics.keys("peers:stats:*")) >= opt.workers)[2], 0.1)

    def stats():
        n, last = 0, 0.0
        for k in metrics.keys("peers:stats:*"):
            h = metrics.hgetall(k)
            n += int(h[b"n"])
            last = max(last, float(h[b"last"]))
        return n, last

    time.sleep(0.3)
    base = stats()[0]
    t0 = time.time()
    for i in range(0, opt.tasks, opt.batch):
        group(noop.s() for _ in range(min(opt.batch, opt.tasks - i))).apply_async()
    submitted = time.time()
    wait_for("the drain", lambda: stats()[0] >= base + opt.tasks, 0.02)
    time.sleep(0.05)
    out["batch"] = {"tasks": opt.tasks,
                    "submit_tasks_per_sec": rnd(opt.tasks / (submitted - t0), 1),
                    "end_to_end_tasks_per_sec": rnd(opt.tasks / (stats()[1] - t0), 1)}

    out["paced"] = {}
    for rate in [int(r) for r in opt.rates.split(",")]:
        metrics.delete("peers:starts")
        sent, achieved = paced(rate, lambda i, t0: stamp.apply_async((t0,)))
        wait_for("the paced tasks", lambda: metrics.llen("peers:starts") >= len(sent), 0.02)
        lat = [(float(b) - float(a)) * 1000
               for a, b in (x.split() for x in metrics.lrange("peers:starts", 0, -1))]
        out["paced"][str(rate)] = dict(summary(lat), achieved_per_sec=rnd(achieved, 1))
    return out


if __name__ == "__main__":
    result = drover() if opt.system == "drover" else celery()
    print(json.dumps(result), flush=True)
