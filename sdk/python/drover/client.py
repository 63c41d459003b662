"""The REST side: submit payloads to handlers, await results, follow events.

Only the standard library (``urllib``) is used: the package's dependencies are grpcio and
protobuf, for the worker.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Union

from .errors import ApiError, DroverError, TaskFailed, Unreachable

__all__ = ["Client", "TaskHandle", "WorkflowHandle"]

TERMINAL = {"succeeded", "failed", "cancelled", "timed_out", "skipped", "expired", "dead"}
WORKFLOW_TERMINAL = {"succeeded", "failed", "cancelled"}

Duration = Union[str, int, float]


def _duration(v: Duration) -> str:
    """``"30s"`` as is; a number is seconds."""
    if isinstance(v, str):
        return v
    return f"{max(0, int(round(float(v) * 1000)))}ms"


# Submit options taken as keyword arguments, with how each is sent.
_OPTIONS = {
    "queue": str,
    "priority": int,
    "retries": int,
    "backoff": _duration,
    "timeout": _duration,
    "delay": _duration,
    "idempotency_key": str,
    "label_selector": str,
    "strategy": str,
    "key": str,
    "resources": dict,
    "after": list,
    "on_upstream_failure": str,
    "concurrency_key": str,
    "max_concurrent": int,
    "serial": bool,
    "at": str,
    "deadline": str,
    "namespace": str,
}


class Client:
    """A Drover server's REST API.

    >>> client = Client("http://127.0.0.1:7070", token="drover_...")
    >>> client.submit("resize", {"w": 100}).result(timeout=30)
    """

    def __init__(
        self,
        server: str = "http://127.0.0.1:7070",
        token: Optional[str] = None,
        namespace: Optional[str] = None,
        timeout: float = 60.0,
    ) -> None:
        if "://" not in server:
            server = "http://" + server
        self.server = server.rstrip("/")
        self.token = token
        self.namespace = namespace
        self.timeout = timeout

    # ---- requests ----

    def _request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Optional[Mapping[str, Any]] = None,
        raw: bool = False,
    ) -> Any:
        url = self.server + path
        if query:
            q = {k: v for k, v in query.items() if v is not None}
            if q:
                url += "?" + urllib.parse.urlencode(q)
        data = None
        headers = {"accept": "application/json"}
        if body is not None:
            data = json.dumps(body).encode()
            headers["content-type"] = "application/json"
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                text = resp.read().decode()
        except urllib.error.HTTPError as e:
            raise ApiError.from_response(e.code, e.read().decode(errors="replace")) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
            reason = getattr(e, "reason", e)
            raise Unreachable(
                f"cannot reach the Drover server at {self.server}: {reason}"
            ) from None
        if raw:
            return text
        return json.loads(text) if text else None

    def _submit_body(self, kind: str, payload: Any, options: Mapping[str, Any]) -> Dict[str, Any]:
        body: Dict[str, Any] = {"kind": kind, "payload": payload}
        for name, value in options.items():
            if name not in _OPTIONS:
                raise TypeError(
                    f"unknown submit option {name!r}; one of: {', '.join(sorted(_OPTIONS))}"
                )
            if value is not None:
                body[name] = _OPTIONS[name](value)
        if self.namespace and "namespace" not in body:
            body["namespace"] = self.namespace
        return body

    # ---- tasks ----

    def submit(self, kind: str, payload: Any = None, **options: Any) -> "TaskHandle":
        """Submits a task for the handler of ``kind`` with ``payload`` (any JSON value).

        Options: ``queue``, ``priority``, ``retries``, ``backoff``, ``timeout`` and ``delay``
        (``"30s"`` or seconds), ``idempotency_key``, ``label_selector``, ``strategy``, ``key``,
        ``after`` (task ids), ``deadline``, ``at``, ... as the REST API names them.
        """
        view = self._request("POST", "/v1/tasks", self._submit_body(kind, payload, options))
        return TaskHandle(self, view["id"], view)

    def submit_many(self, kind: str, payloads: Iterable[Any], **options: Any) -> List["TaskHandle"]:
        """Submits one task per payload in one request and one commit (up to 10,000)."""
        tasks = [self._submit_body(kind, p, options) for p in payloads]
        ids = self._request("POST", "/v1/tasks:batch", {"tasks": tasks})["ids"]
        return [TaskHandle(self, i) for i in ids]

    def task(self, task_id: str) -> "TaskHandle":
        """A handle on an existing task."""
        return TaskHandle(self, task_id)

    # ---- workflows ----

    def submit_workflow(self, doc: Mapping[str, Any]) -> "WorkflowHandle":
        """Submits a workflow: the same document as ``drover submit --file`` (name, tasks with
        ``kind``/``payload`` or ``argv``, ``after`` edges)."""
        body = dict(doc)
        if self.namespace and "namespace" not in body:
            body["namespace"] = self.namespace
        view = self._request("POST", "/v1/workflows", body)
        return WorkflowHandle(self, view["id"], view)

    # ---- events ----

    def events(
        self,
        follow: bool = True,
        after: Optional[int] = None,
        task: Optional[str] = None,
        queue: Optional[str] = None,
        state: Optional[str] = None,
        type: Optional[str] = None,
        workflow: Optional[str] = None,
    ) -> Iterator[Dict[str, Any]]:
        """The event stream (``GET /v1/events``), one dict per event, in order. Follows live
        events (resuming after the last seen on a broken connection) unless ``follow=False``."""
        last = after
        while True:
            query = {
                "task": task,
                "queue": queue,
                "state": state,
                "type": type,
                "workflow": workflow,
                "after": last,
                "follow": "true" if follow else "false",
            }
            if self.namespace:
                query["namespace"] = self.namespace
            try:
                for ev in self._sse("/v1/events", query):
                    last = ev.get("seq", last)
                    yield ev
            except (Unreachable, ConnectionError, OSError):
                if not follow:
                    raise
                time.sleep(0.5)
                continue
            if not follow:
                return

    def _sse(self, path: str, query: Mapping[str, Any]) -> Iterator[Dict[str, Any]]:
        q = {k: v for k, v in query.items() if v is not None}
        url = self.server + path + "?" + urllib.parse.urlencode(q)
        headers = {"accept": "text/event-stream"}
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(url, headers=headers)
        try:
            resp = urllib.request.urlopen(req, timeout=None)
        except urllib.error.HTTPError as e:
            raise ApiError.from_response(e.code, e.read().decode(errors="replace")) from None
        except urllib.error.URLError as e:
            raise Unreachable(f"cannot reach the Drover server at {self.server}: {e.reason}")
        with resp:
            data: List[str] = []
            for line in resp:
                text = line.decode().rstrip("\r\n")
                if text.startswith("data:"):
                    data.append(text[5:].lstrip())
                elif text == "" and data:
                    yield json.loads("\n".join(data))
                    data = []


def _wait(poll, done, timeout: Optional[float], what: str) -> Dict[str, Any]:
    """Polls ``poll()`` (backoff 20 ms to 500 ms) until ``done(view)``."""
    deadline = None if timeout is None else time.monotonic() + timeout
    pause = 0.02
    while True:
        view = poll()
        if done(view):
            return view
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(f"{what} has not ended after {timeout}s (it is {view['state']})")
        left = pause if deadline is None else min(pause, max(0.0, deadline - time.monotonic()))
        time.sleep(left)
        pause = min(pause * 1.5, 0.5)


class TaskHandle:
    """A submitted task: its id, its status, its result."""

    def __init__(self, client: Client, task_id: str, view: Optional[Dict[str, Any]] = None):
        self.client = client
        self.id = task_id
        self._view = view

    def __repr__(self) -> str:
        return f"TaskHandle({self.id!r})"

    def status(self) -> Dict[str, Any]:
        """The task as ``GET /v1/tasks/{id}`` shows it (``state``, ``attempt``, ``error``,
        ``payload``, ``result``, ...)."""
        self._view = self.client._request("GET", f"/v1/tasks/{self.id}")
        return self._view

    @property
    def state(self) -> str:
        return self.status()["state"]

    def wait(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        """Waits until the task ended; returns its view."""
        return _wait(self.status, lambda v: v["state"] in TERMINAL, timeout, f"task {self.id}")

    def result(self, timeout: Optional[float] = None) -> Any:
        """Waits for the task and returns its handler's result; raises :class:`TaskFailed`
        (with the handler's error message) if it did not succeed, ``TimeoutError`` if it did
        not end within ``timeout`` seconds."""
        view = self.wait(timeout)
        if view["state"] != "succeeded":
            raise TaskFailed(self.id, view["state"], view.get("error"))
        return view.get("result")

    def cancel(self) -> Dict[str, Any]:
        """Cancels the task (a running handler sees ``ctx.cancelled``)."""
        self._view = self.client._request("POST", f"/v1/tasks/{self.id}/cancel")
        return self._view

    def logs(self, attempt: Optional[int] = None) -> Dict[str, Any]:
        """The output of an attempt (default the latest): ``stdout`` and ``stderr``."""
        return self.client._request("GET", f"/v1/tasks/{self.id}/logs", query={"attempt": attempt})


class WorkflowHandle:
    """A submitted workflow."""

    def __init__(self, client: Client, workflow_id: str, view: Optional[Dict[str, Any]] = None):
        self.client = client
        self.id = workflow_id
        self._view = view

    def __repr__(self) -> str:
        return f"WorkflowHandle({self.id!r})"

    def status(self) -> Dict[str, Any]:
        self._view = self.client._request("GET", f"/v1/workflows/{self.id}")
        return self._view

    def wait(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        return _wait(
            self.status, lambda v: v["state"] in WORKFLOW_TERMINAL, timeout, f"workflow {self.id}"
        )

    def result(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        """The workflow's result: its sink nodes' results by node name. Raises
        :class:`TaskFailed` naming the first node that did not succeed."""
        view = self.wait(timeout)
        if view["state"] != "succeeded":
            bad = next((n for n in view["nodes"] if n["state"] != "succeeded"), None)
            if bad is None:
                raise DroverError(f"workflow {self.id} {view['state']}")
            raise TaskFailed(bad["task_id"], bad["state"], bad.get("error"), node=bad["name"])
        return view.get("result") or {}

    def tasks(self) -> Dict[str, TaskHandle]:
        """Each node's task, by node name."""
        view = self._view or self.status()
        return {n["name"]: TaskHandle(self.client, n["task_id"]) for n in view["nodes"]}
