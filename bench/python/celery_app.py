"""The Celery side of the benchmark: a no-op task on a Redis broker, results ignored. Each
worker process reports (count, first start, last end) to Redis from a background thread
every 50 ms, off the tasks' path, so the measurement costs the tasks nothing."""

import os
import threading
import time

import redis
from celery import Celery
from celery.signals import task_postrun, task_prerun

BROKER = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/15")
app = Celery("bench", broker=BROKER)
app.conf.update(task_ignore_result=True, worker_hijack_root_logger=False, broker_connection_retry_on_startup=True)

_stats = {"n": 0, "first": None, "last": None}
_reporter = {"pid": None}


def _report_forever():
    r = redis.Redis.from_url(BROKER)
    key = f"bench:stats:{os.getpid()}"
    while True:
        s = dict(_stats)
        if s["n"]:
            r.hset(key, mapping={"n": s["n"], "first": s["first"], "last": s["last"]})
        time.sleep(0.05)


@task_prerun.connect
def _start(**_):
    if _reporter["pid"] != os.getpid():
        _reporter["pid"] = os.getpid()
        _stats.update(n=0, first=None, last=None)
        threading.Thread(target=_report_forever, daemon=True).start()
    if _stats["first"] is None:
        _stats["first"] = time.time()


@task_postrun.connect
def _end(**_):
    _stats["last"] = time.time()
    _stats["n"] += 1


@app.task(name="noop")
def noop(payload=None):
    return None


@app.task(name="stamp")
def stamp(sent):
    """For the paced latency run: enqueue-to-finish, recorded by the task (100/s)."""
    redis.Redis.from_url(BROKER).rpush("bench:latency", time.time() - sent)
