"""The worker: handlers by kind, run on Drover's gRPC worker protocol.

It speaks the same stream as ``drover worker`` (``WorkerService/Session``): it registers its
handler kinds, slots (``concurrency``) and ``prefetch`` (the server never sends more than
their sum: credit flow control), heartbeats every attempt it holds (renewing their leases),
echoes each attempt's fencing token (task, attempt, lease) on every report, drops an attempt
the server rejects, and after a lost connection reconnects with backoff and re-attaches the
attempts it still holds. SIGTERM (or :meth:`Worker.stop`) stops taking work, gives back
what waits for a slot, lets running handlers finish (``shutdown_grace``), reports them and
returns.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import json
import os
import queue
import random
import signal
import socket
import sys
import threading
import time
import traceback
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

import grpc

from .errors import DroverError
from .v1 import worker_pb2 as pb
from .v1 import worker_pb2_grpc as pb_grpc

__all__ = ["Worker", "Ctx"]

MAX_RESULT_BYTES = 1 << 20
MAX_MESSAGE = 64 << 20
# About the most bytes and entries of one Updates message.
BATCH_BYTES = 1 << 20
BATCH_ITEMS = 8192
# How long a cancelled handler may take to return before its slot is freed anyway.
CANCEL_GRACE = 5.0
BACKOFF_MIN, BACKOFF_MAX = 0.1, 5.0
STDOUT, STDERR = 1, 2

Handler = Callable[["Ctx", Any], Any]

# The attempt whose handler runs in this thread or asyncio task (for print capture).
_current: contextvars.ContextVar[Optional["_Attempt"]] = contextvars.ContextVar(
    "drover_attempt", default=None
)


class Ctx:
    """What a handler gets besides its payload."""

    def __init__(self, worker: "Worker", att: "_Attempt", upstream: Dict[str, Any]):
        self._worker = worker
        self._att = att
        self.task_id: str = att.ref.task_id
        self.attempt: int = att.ref.attempt
        self.kind: str = att.kind
        #: A workflow node's succeeded upstream nodes' results, by node name.
        self.upstream: Dict[str, Any] = upstream
        self._cancel = threading.Event()

    @property
    def cancelled(self) -> bool:
        """True once the task was cancelled, timed out, or the server took it back: return
        soon (cooperative cancellation)."""
        return self._cancel.is_set()

    def wait_cancelled(self, timeout: Optional[float] = None) -> bool:
        """Blocks until cancelled (or ``timeout`` seconds); returns :attr:`cancelled`."""
        return self._cancel.wait(timeout)

    def log(self, *parts: Any) -> None:
        """Writes one line to the task's log (``drover logs``), like ``print``."""
        line = " ".join(str(p) for p in parts) + "\n"
        self._worker._log(self._att, STDOUT, line.encode())

    def __repr__(self) -> str:
        return f"Ctx(task_id={self.task_id!r}, attempt={self.attempt})"


class _Attempt:
    __slots__ = (
        "ref", "key", "kind", "spec", "timeout", "ctx", "running", "done", "forgotten",
        "cancelled",
    )

    def __init__(self, ref: pb.AttemptRef, kind: str, spec: pb.HandlerSpec, timeout: Optional[float]):
        self.ref = ref
        self.key = (ref.task_id, ref.attempt, ref.lease)
        self.kind = kind
        self.spec = spec
        self.timeout = timeout
        self.ctx: Optional[Ctx] = None
        self.running = False
        self.done = False
        self.forgotten = False
        self.cancelled = False


class _Tee:
    """``sys.stdout``/``sys.stderr`` while the worker runs: a handler's writes go to its
    task's log, everything else to the real stream."""

    def __init__(self, worker: "Worker", real: Any, stream: int):
        self._worker = worker
        self._real = real
        self._stream = stream

    def write(self, s: str) -> int:
        att = _current.get()
        if att is None:
            return self._real.write(s)
        self._worker._log(att, self._stream, s.encode())
        return len(s)

    def flush(self) -> None:
        if _current.get() is None:
            self._real.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class _Pool:
    """Daemon threads running handler calls: a handler that never returns holds its thread,
    not the process (a worker exits after its shutdown grace whatever its handlers do)."""

    def __init__(self, size: int) -> None:
        self._jobs: "queue.SimpleQueue[Tuple[Callable[..., None], tuple]]" = queue.SimpleQueue()
        for _ in range(size):
            self.grow()

    def grow(self) -> None:
        threading.Thread(target=self._serve, daemon=True, name="drover-handler").start()

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        self._jobs.put((fn, args))

    def _serve(self) -> None:
        while True:
            fn, args = self._jobs.get()
            fn(*args)


class _Conn:
    """One session: its outbound queue and whether it still stands."""

    def __init__(self) -> None:
        self.outbound: "queue.Queue[Optional[pb.WorkerMessage]]" = queue.Queue()
        self.up = True
        self.closing = False
        self.heartbeat = 1.0
        self.channel: Optional[grpc.Channel] = None

    def requests(self):
        while True:
            m = self.outbound.get()
            if m is None:
                return
            yield m


def _default_name() -> str:
    host = "".join(c for c in socket.gethostname() if c.isalnum() or c in "._-")[:40]
    return f"py-{host or 'worker'}-{os.getpid()}"


class Worker:
    """Runs handlers for the kinds registered with :meth:`task`.

    >>> worker = Worker("http://127.0.0.1:7070", token="drover_...", concurrency=8)
    >>> @worker.task("resize")
    ... def resize(ctx, payload):
    ...     return {"pixels": payload["w"] * payload["h"]}
    >>> worker.run()   # until SIGTERM
    """

    def __init__(
        self,
        server: Optional[str] = None,
        token: Optional[str] = None,
        *,
        name: Optional[str] = None,
        concurrency: int = 4,
        prefetch: int = 0,
        labels: Optional[Dict[str, str]] = None,
        namespaces: Optional[List[str]] = None,
        shutdown_grace: float = 30.0,
        capture_output: bool = True,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        servers = server or os.environ.get("DROVER_SERVER", "http://127.0.0.1:7070")
        self.servers = [s.strip() for s in servers.split(",") if s.strip()]
        self.token = token if token is not None else os.environ.get("DROVER_TOKEN")
        self.name = name or _default_name()
        self.concurrency = concurrency
        self.prefetch = prefetch
        self.labels = dict(labels or {})
        self.namespaces = list(namespaces or [])
        self.shutdown_grace = shutdown_grace
        self.capture_output = capture_output
        self._handlers: Dict[str, Handler] = {}
        self._lock = threading.Condition()
        self._held: Dict[Tuple[str, int, str], _Attempt] = {}
        self._waiting: Deque[_Attempt] = deque()
        self._running = 0
        self._outbox: List[Tuple[int, Any]] = []
        self._heartbeat_due = False
        self._stopping: Optional[float] = None
        self._stopped = threading.Event()
        self._conn: Optional[_Conn] = None
        self._registered = False
        self._pool: Optional[_Pool] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._error: Optional[BaseException] = None

    # ---- registration ----

    def task(self, kind: str) -> Callable[[Handler], Handler]:
        """Registers the decorated function (plain or ``async def``) as the handler of
        ``kind``. It takes ``(ctx, payload)`` and returns the result (any JSON value); an
        exception fails the attempt with its message (the traceback goes to the logs)."""
        if not kind or kind == "noop":
            raise ValueError(f"{kind!r} cannot name a handler")

        def register(fn: Handler) -> Handler:
            self._handlers[kind] = fn
            return fn

        return register

    # ---- running ----

    def run(self) -> None:
        """Runs until SIGTERM/SIGINT (in the main thread) or :meth:`stop`; then finishes."""
        if not self._handlers:
            raise DroverError("no handlers: register one with @worker.task(\"kind\")")
        in_main = threading.current_thread() is threading.main_thread()
        if in_main:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self.stop())
        self._pool = _Pool(self.concurrency)
        if any(inspect.iscoroutinefunction(h) for h in self._handlers.values()):
            self._loop = asyncio.new_event_loop()
            threading.Thread(target=self._loop.run_forever, daemon=True, name="drover-async").start()
        real = (sys.stdout, sys.stderr)
        if self.capture_output:
            sys.stdout = _Tee(self, real[0], STDOUT)  # type: ignore[assignment]
            sys.stderr = _Tee(self, real[1], STDERR)  # type: ignore[assignment]
        try:
            self._connect_loop()
        finally:
            if self.capture_output:
                sys.stdout, sys.stderr = real
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._loop.stop)
            self._stopped.set()

    def start(self) -> "Worker":
        """Runs the worker in a background thread (see :meth:`stop`, :meth:`join`)."""

        def main() -> None:
            try:
                self.run()
            except BaseException as e:  # noqa: BLE001 - kept for join()
                self._error = e

        self._thread = threading.Thread(target=main, daemon=True, name="drover-worker")
        self._thread.start()
        return self

    def join(self, timeout: Optional[float] = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        """Stops taking work; waiting attempts are given back, running handlers finish."""
        with self._lock:
            if self._stopping is not None:
                return
            self._stopping = time.monotonic()
            while self._waiting:
                att = self._waiting.popleft()
                self._held.pop(att.key, None)
                self._finished(att, pb.OUTCOME_CANCELLED, "worker shutting down")
            self._lock.notify_all()

    # ---- the connection ----

    def _connect_loop(self) -> None:
        backoff = BACKOFF_MIN
        n = 0
        while True:
            with self._lock:
                if self._should_exit():
                    return
            server = self.servers[n % len(self.servers)]
            try:
                self._session(server)
                backoff = BACKOFF_MIN
            except grpc.RpcError as e:
                code = e.code() if hasattr(e, "code") else None
                details = e.details() if hasattr(e, "details") else str(e)
                refused = (
                    grpc.StatusCode.INVALID_ARGUMENT,
                    grpc.StatusCode.PERMISSION_DENIED,
                    grpc.StatusCode.UNAUTHENTICATED,
                )
                if code in refused or (code == grpc.StatusCode.ALREADY_EXISTS and not self._registered):
                    raise DroverError(f"the server refused this worker: {details}") from None
                if self._stopping is None:
                    self._warn(f"lost the server {server} ({code}: {details}); reconnecting")
            except Exception as e:  # noqa: BLE001 - a broken connection, retried
                self._warn(f"lost the server {server} ({e}); reconnecting")
            with self._lock:
                self._conn = None
                if self._should_exit():
                    return
            n += 1
            delay = backoff / 2 + random.random() * backoff / 2
            backoff = min(backoff * 2, BACKOFF_MAX)
            self._stopped.wait(delay)

    def _should_exit(self) -> bool:
        """Stopping, and nothing left to run or report (or the grace is over)."""
        if self._stopping is None:
            return False
        return (self._running == 0 and not self._outbox) or self._grace_over()

    def _grace_over(self) -> bool:
        return self._stopping is not None and time.monotonic() - self._stopping > self.shutdown_grace

    def _warn(self, msg: str) -> None:
        out = sys.stderr._real if isinstance(sys.stderr, _Tee) else sys.stderr  # type: ignore[attr-defined]
        print(f"drover worker {self.name}: {msg}", file=out)

    def _channel(self, server: str) -> grpc.Channel:
        target = server.split("://", 1)[-1].rstrip("/")
        options = [
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
            ("grpc.keepalive_time_ms", 10_000),
            ("grpc.keepalive_timeout_ms", 5_000),
            ("grpc.keepalive_permit_without_calls", 1),
        ]
        if server.startswith("https://"):
            return grpc.secure_channel(target, grpc.ssl_channel_credentials(), options)
        return grpc.insecure_channel(target, options)

    def _session(self, server: str) -> None:
        conn = _Conn()
        conn.channel = self._channel(server)
        with self._lock:
            conn.outbound.put(self._register())
        metadata = [("authorization", f"Bearer {self.token}")] if self.token else []
        stub = pb_grpc.WorkerServiceStub(conn.channel)
        responses = stub.Session(conn.requests(), metadata=metadata)
        try:
            first = next(responses)
            if first.WhichOneof("body") != "registered":
                raise DroverError("the server's first message was not registered")
            conn.heartbeat = max(first.registered.heartbeat_interval_ms, 10) / 1000
            self._registered = True
            with self._lock:
                self._conn = conn
            flusher = threading.Thread(target=self._flusher, args=(conn,), daemon=True)
            flusher.start()
            ticker = threading.Thread(target=self._ticker, args=(conn,), daemon=True)
            ticker.start()
            for msg in responses:
                self._on_server(msg)
        finally:
            with self._lock:
                conn.up = False
                self._lock.notify_all()
            conn.outbound.put(None)
            conn.channel.close()

    def _register(self) -> pb.WorkerMessage:
        held = [a.ref for a in self._held.values() if not a.forgotten]
        held += [f.attempt for kind, f in self._outbox if kind == 3]
        return pb.WorkerMessage(
            register=pb.Register(
                name=self.name,
                labels=self.labels,
                kinds=sorted(self._handlers),
                slots=self.concurrency,
                prefetch=self.prefetch,
                held=held,
                version="drover-python",
                namespaces=self.namespaces,
            )
        )

    def _ticker(self, conn: _Conn) -> None:
        while conn.up:
            time.sleep(conn.heartbeat)
            with self._lock:
                self._heartbeat_due = True
                if self._stopping is not None and self._grace_over() and conn.channel is not None:
                    conn.channel.close()
                self._lock.notify_all()

    def _flusher(self, conn: _Conn) -> None:
        """Sends what is pending: updates first (in order), then a due heartbeat; closes our
        half of the stream once a shutdown has nothing left to run or say."""
        while True:
            with self._lock:
                while conn.up and not self._outbox and not self._heartbeat_due and not (
                    self._stopping is not None and self._running == 0
                ):
                    self._lock.wait()
                if not conn.up:
                    return
                items = self._take()
                beat = None
                if not self._outbox and self._heartbeat_due:
                    self._heartbeat_due = False
                    beat = pb.WorkerMessage(
                        heartbeat=pb.Heartbeat(
                            held=[a.ref for a in self._held.values() if not a.forgotten],
                            running=self._running,
                        )
                    )
                done = (
                    self._stopping is not None and self._running == 0 and not self._outbox
                )
            if items is not None:
                conn.outbound.put(pb.WorkerMessage(updates=items))
            if beat is not None:
                conn.outbound.put(beat)
            if done and not conn.closing:
                conn.closing = True
                conn.outbound.put(None)  # the server closes its half: the session ends
                return

    def _take(self) -> Optional[pb.Updates]:
        """The oldest pending updates, up to one message (caller holds the lock)."""
        if not self._outbox:
            return None
        u = pb.Updates()
        size = 0
        n = 0
        for kind, item in self._outbox:
            s = 64 + (len(item.data) if kind == 2 else len(item.result) + len(item.error) if kind == 3 else 0)
            if n and (n >= BATCH_ITEMS or size + s > BATCH_BYTES):
                break
            size += s
            n += 1
            if kind == 1:
                u.started.add(attempt=item)
            elif kind == 2:
                u.logs.append(item)
            else:
                u.finished.append(item)
        del self._outbox[:n]
        return u

    # ---- what the server says ----

    def _on_server(self, msg: pb.ServerMessage) -> None:
        which = msg.WhichOneof("body")
        with self._lock:
            if which == "assignments":
                for a in msg.assignments.assignments:
                    self._on_assignment(a)
            elif which == "cancel":
                for ref in msg.cancel.attempts:
                    self._on_cancel(ref, forget=False)
            elif which == "rejected":
                self._on_cancel(msg.rejected.attempt, forget=True)
            self._lock.notify_all()

    def _on_assignment(self, a: pb.Assignment) -> None:
        ref = a.attempt
        key = (ref.task_id, ref.attempt, ref.lease)
        if key in self._held:
            return
        if self._stopping is not None:
            self._report_now(ref, pb.OUTCOME_CANCELLED, "worker shutting down")
            return
        if a.WhichOneof("spec") != "handler" or a.kind not in self._handlers:
            self._outbox.append((1, ref))
            self._report_now(ref, pb.OUTCOME_FAILED, f"this worker has no handler for kind {a.kind!r}")
            return
        timeout = a.timeout_ms / 1000 if a.HasField("timeout_ms") and a.timeout_ms > 0 else None
        att = _Attempt(ref, a.kind, a.handler, timeout)
        self._held[key] = att
        if self._running < self.concurrency:
            self._start(att)
        else:
            self._waiting.append(att)

    def _on_cancel(self, ref: pb.AttemptRef, forget: bool) -> None:
        att = self._held.get((ref.task_id, ref.attempt, ref.lease))
        if att is None:
            return
        if not att.running:
            self._held.pop(att.key, None)
            try:
                self._waiting.remove(att)
            except ValueError:
                pass
            if not forget:
                self._finished(att, pb.OUTCOME_CANCELLED, "cancelled")
            return
        att.cancelled = True
        att.forgotten = att.forgotten or forget
        if att.ctx is not None:
            att.ctx._cancel.set()
        timer = threading.Timer(CANCEL_GRACE, self._abandon, (att,))
        timer.daemon = True
        timer.start()

    # ---- running handlers ----

    def _start(self, att: _Attempt) -> None:
        """Starts a handler (caller holds the lock)."""
        att.running = True
        self._running += 1
        self._outbox.append((1, att.ref))
        try:
            upstream = {k: json.loads(v) for k, v in att.spec.upstream.items()}
        except ValueError:
            upstream = dict(att.spec.upstream)
        att.ctx = Ctx(self, att, upstream)
        fn = self._handlers[att.kind]
        if att.timeout is not None:
            t = threading.Timer(att.timeout, self._timed_out, (att,))
            t.daemon = True
            t.start()
        if inspect.iscoroutinefunction(fn):
            assert self._loop is not None
            asyncio.run_coroutine_threadsafe(self._call_async(att, fn), self._loop)
        else:
            assert self._pool is not None
            self._pool.submit(self._call_sync, att, fn)

    def _call_sync(self, att: _Attempt, fn: Handler) -> None:
        try:
            self._call_sync_inner(att, fn)
        except BaseException as e:  # noqa: BLE001 - never leave an attempt unreported
            self._report(att, pb.OUTCOME_FAILED, f"drover worker error: {e!r}")

    def _call_sync_inner(self, att: _Attempt, fn: Handler) -> None:
        token = _current.set(att)
        try:
            payload = json.loads(att.spec.payload) if att.spec.payload else None
            result = fn(att.ctx, payload)
        except BaseException as e:  # noqa: BLE001 - reported as the attempt's failure
            self._failed(att, e)
        else:
            self._succeeded(att, result)
        finally:
            _current.reset(token)

    async def _call_async(self, att: _Attempt, fn: Handler) -> None:
        _current.set(att)
        try:
            payload = json.loads(att.spec.payload) if att.spec.payload else None
            result = await fn(att.ctx, payload)
        except BaseException as e:  # noqa: BLE001
            self._failed(att, e)
        else:
            self._succeeded(att, result)

    def _succeeded(self, att: _Attempt, result: Any) -> None:
        try:
            text = json.dumps(result, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as e:
            self._log(att, STDERR, f"the handler's result is not JSON: {e}\n".encode())
            self._report(att, pb.OUTCOME_FAILED, f"the handler's result is not JSON: {e}")
            return
        if len(text.encode()) > MAX_RESULT_BYTES:
            why = f"the handler's result is {len(text.encode())} bytes as JSON; at most 1 MiB"
            self._report(att, pb.OUTCOME_FAILED, why)
            return
        self._report(att, pb.OUTCOME_SUCCEEDED, None, text)

    def _failed(self, att: _Attempt, e: BaseException) -> None:
        tb = "".join(traceback.format_exception(type(e), e, e.__traceback__))
        self._log(att, STDERR, tb.encode())
        msg = str(e)
        self._report(att, pb.OUTCOME_FAILED, f"{type(e).__name__}: {msg}" if msg else type(e).__name__)

    def _abandon(self, att: _Attempt) -> None:
        """A cancelled handler that did not return within the grace: its slot is freed (and
        its thread replaced); whatever it returns later is dropped."""
        with self._lock:
            if att.done:
                return
        if self._pool is not None and not inspect.iscoroutinefunction(self._handlers[att.kind]):
            self._pool.grow()
        self._report(att, pb.OUTCOME_CANCELLED, "cancelled")

    def _timed_out(self, att: _Attempt) -> None:
        if att.ctx is not None:
            att.ctx._cancel.set()
        with self._lock:
            if att.done:
                return
        if self._pool is not None and not inspect.iscoroutinefunction(self._handlers[att.kind]):
            self._pool.grow()
        self._report(att, pb.OUTCOME_TIMED_OUT, f"timed out after {int(att.timeout * 1000)}ms")

    def _report(self, att: _Attempt, outcome: int, error: Optional[str], result: Optional[str] = None) -> None:
        with self._lock:
            if att.done:
                return
            if att.cancelled and outcome != pb.OUTCOME_TIMED_OUT:
                outcome, error, result = pb.OUTCOME_CANCELLED, "cancelled", None
            att.done = True
            self._held.pop(att.key, None)
            self._running -= 1
            if not att.forgotten:
                self._finished(att, outcome, error, result)
            while self._waiting and self._running < self.concurrency:
                self._start(self._waiting.popleft())
            self._lock.notify_all()

    def _finished(self, att: _Attempt, outcome: int, error: Optional[str], result: Optional[str] = None) -> None:
        self._report_now(att.ref, outcome, error, result)

    def _report_now(self, ref: pb.AttemptRef, outcome: int, error: Optional[str], result: Optional[str] = None) -> None:
        f = pb.Finished(attempt=ref, outcome=outcome)
        if error is not None:
            f.error = error[:4096]
        if result is not None:
            f.result = result
        self._outbox.append((3, f))

    def _log(self, att: _Attempt, stream: int, data: bytes) -> None:
        if not data:
            return
        with self._lock:
            if att.done or att.forgotten:
                return
            if self._outbox:
                kind, last = self._outbox[-1]
                if (
                    kind == 2
                    and last.stream == stream
                    and last.attempt.task_id == att.ref.task_id
                    and last.attempt.attempt == att.ref.attempt
                    and len(last.data) < 65536
                ):
                    last.data += data
                    self._lock.notify_all()
                    return
            self._outbox.append((2, pb.LogChunk(attempt=att.ref, stream=stream, data=data)))
            self._lock.notify_all()
