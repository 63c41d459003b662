"""Drover's Python SDK: tasks as functions.

A :class:`Worker` runs handlers (plain or ``async def``) for task kinds on Drover's gRPC
worker protocol; a :class:`Client` submits payloads and reads results over REST.

    from drover import Worker
    worker = Worker("http://127.0.0.1:7070", token="drover_...")

    @worker.task("resize")
    def resize(ctx, payload):
        return {"pixels": payload["w"] * payload["h"]}
"""

from .client import Client, TaskHandle, WorkflowHandle
from .errors import ApiError, DroverError, TaskFailed, Unreachable
from .worker import Ctx, Worker

__version__ = "0.1.0"

__all__ = [
    "Client",
    "TaskHandle",
    "WorkflowHandle",
    "Worker",
    "Ctx",
    "DroverError",
    "ApiError",
    "TaskFailed",
    "Unreachable",
    "__version__",
]
