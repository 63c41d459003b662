"""The Drover side of the benchmark: one Python worker process with a no-op handler."""

import os

from drover import Worker

worker = Worker(
    concurrency=int(os.environ.get("BENCH_CONCURRENCY", "1")),
    prefetch=int(os.environ.get("BENCH_PREFETCH", "256")),
    capture_output=False,
)


@worker.task("noop_py")
def noop(ctx, payload):
    return None
