"""Workers the tests run as `python -m drover worker tests.apps:...` subprocesses."""

import time

from drover import Worker

# Server and token come from DROVER_SERVER / DROVER_TOKEN.
slow = Worker(concurrency=2, shutdown_grace=10)


@slow.task("slow")
def slow_task(ctx, payload):
    print(f"attempt {ctx.attempt} starts")
    time.sleep(payload["seconds"])
    return {"attempt": ctx.attempt}
