"""The Drover side of bench/peers in Python: an SDK worker process with a no-op handler that
returns the time its handler started (so enqueue -> start is read the same way as Celery's)."""

import os
import time

from drover import Worker

worker = Worker(
    concurrency=int(os.environ.get("PEERS_CONCURRENCY", "1")),
    prefetch=int(os.environ.get("PEERS_PREFETCH", "256")),
    capture_output=False,
)


@worker.task("noop_py")
def noop(ctx, payload):
    return time.time()
