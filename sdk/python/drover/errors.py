"""Errors that say what went wrong."""

from __future__ import annotations

import json
from typing import Optional

__all__ = ["DroverError", "ApiError", "Unreachable", "TaskFailed"]


class DroverError(Exception):
    """Every error of this package."""


class ApiError(DroverError):
    """The server refused a request: its ``code``, ``message`` and the ``field`` at fault."""

    def __init__(self, status: int, code: str, message: str, field: Optional[str] = None):
        super().__init__(f"{message} (HTTP {status}, {code}{', field ' + field if field else ''})")
        self.status = status
        self.code = code
        self.message = message
        self.field = field

    @classmethod
    def from_response(cls, status: int, body: str) -> "ApiError":
        try:
            e = json.loads(body)
            return cls(status, e.get("code", "unknown"), e.get("message", body), e.get("field"))
        except (ValueError, AttributeError):
            return cls(status, "unknown", body.strip() or f"HTTP {status}")


class Unreachable(DroverError, ConnectionError):
    """No connection to the server could be made."""


class TaskFailed(DroverError):
    """A task whose result was awaited did not succeed. ``error`` carries the handler's
    message (its traceback is in the task's logs: ``drover logs ID``)."""

    def __init__(
        self,
        task_id: str,
        state: str,
        error: Optional[str],
        node: Optional[str] = None,
    ):
        what = f"task {task_id}" + (f" (node {node})" if node else "")
        super().__init__(f"{what} {state}" + (f": {error}" if error else ""))
        self.task_id = task_id
        self.state = state
        self.error = error
        self.node = node
