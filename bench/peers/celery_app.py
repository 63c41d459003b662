"""The Celery side of bench/peers: no-op tasks on a Redis broker, results ignored.

Each worker process counts its tasks (n, first start, last end) and, for `stamp` tasks, keeps
(client time, handler start time); a background thread hands both to a separate, non-persistent
Redis (PEERS_METRICS) every 20 ms, so the measurement neither slows the tasks nor writes to the
broker under test."""

import os
import threading
import time

import redis
from celery import Celery

BROKER = os.environ["PEERS_BROKER"]
METRICS = os.environ["PEERS_METRICS"]
app = Celery("peers", broker=BROKER)
app.conf.update(
    task_ignore_result=True,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    worker_prefetch_multiplier=int(os.environ.get("PEERS_PREFETCH", "64")),
)

_st = {"n": 0, "first": None, "last": None, "starts": [], "pid": None}


def _report_forever():
    r = redis.Redis.from_url(METRICS)
    key = f"peers:stats:{os.getpid()}"
    while True:
        starts, _st["starts"] = _st["starts"], []
        if starts:
            r.rpush("peers:starts", *[f"{a} {b}" for a, b in starts])
        if _st["n"]:
            r.hset(key, mapping={"n": _st["n"], "first": _st["first"], "last": _st["last"]})
        time.sleep(0.02)


def _started():
    start = time.time()
    if _st["pid"] != os.getpid():
        _st.update(n=0, first=None, last=None, starts=[], pid=os.getpid())
        threading.Thread(target=_report_forever, daemon=True).start()
    if _st["first"] is None:
        _st["first"] = start
    return start


def _ended():
    _st["n"] += 1
    _st["last"] = time.time()


@app.task(name="noop")
def noop():
    _started()
    _ended()


@app.task(name="stamp")
def stamp(t0):
    _st["starts"].append((t0, _started()))
    _ended()
