"""Fixtures: a real `drover server` (the debug binary unless DROVER_BIN says otherwise) on an
ephemeral loopback port with a fresh SQLite store and a known admin token; workers in this
process or as `python -m drover worker` subprocesses. Synchronisation is by polling with
deadlines."""

import os
import subprocess
import sys
import threading
import time

import pytest

from drover import Client, Worker

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
BIN = os.environ.get("DROVER_BIN", os.path.join(ROOT, "target", "debug", "drover"))
TOKEN = "drover_" + "5d" * 32


class Server:
    def __init__(self, tmp):
        data = str(tmp)
        with open(os.path.join(data, "admin.token"), "w") as f:
            f.write(TOKEN + "\n")
        args = [
            BIN, "server", "--listen", "127.0.0.1:0",
            "--store", f"sqlite://{data}/drover.db", "--data-dir", data,
            "--lease", "2s", "--heartbeat", "200ms", "--restart-grace", "4s",
        ]
        env = dict(os.environ, RUST_LOG="warn")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env)
        self.url = None
        found = threading.Event()

        def read():
            for raw in self.proc.stdout:
                line = raw.decode(errors="replace")
                if self.url is None and "listening on" in line:
                    self.url = next(w for w in line.split() if w.startswith("http://"))
                    found.set()

        threading.Thread(target=read, daemon=True).start()
        if not found.wait(30):
            self.proc.kill()
            raise RuntimeError("drover server did not start within 30s")

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def wait_for(what, f, within=15.0):
    deadline = time.monotonic() + within
    pause = 0.01
    while True:
        v = f()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(pause)
        pause = min(pause * 2, 0.2)


@pytest.fixture
def server(tmp_path):
    if not os.path.exists(BIN):
        pytest.fail(f"no drover binary at {BIN}: run cargo build (or set DROVER_BIN)")
    s = Server(tmp_path)
    yield s
    s.stop()


@pytest.fixture
def client(server):
    return Client(server.url, token=TOKEN)


@pytest.fixture
def workers(server):
    """Starts in-process workers: `workers(worker)`; all are stopped at the end."""
    started = []

    def start(w: Worker) -> Worker:
        w.start()
        started.append(w)
        c = Client(server.url, token=TOKEN)
        wait_for(f"worker {w.name}", lambda: any(
            x["name"] == w.name and x["state"] == "alive"
            for x in c._request("GET", "/v1/workers")["workers"]))
        return w

    yield start
    for w in started:
        w.stop()
    for w in started:
        w.join(15)


def spawn_worker(server, module, name):
    """`python -m drover worker tests.apps:NAME` as a subprocess."""
    env = dict(os.environ, DROVER_SERVER=server.url, DROVER_TOKEN=TOKEN, PYTHONPATH=os.path.dirname(HERE))
    return subprocess.Popen(
        [sys.executable, "-m", "drover", "worker", module, "--name", name],
        env=env, cwd=os.path.dirname(HERE), stdin=subprocess.DEVNULL,
    )
