"""``python -m drover worker module:worker``: runs the Worker object ``worker`` of ``module``
until SIGTERM (running handlers finish first)."""

from __future__ import annotations

import argparse
import importlib
import sys

from .worker import Worker


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m drover")
    sub = p.add_subparsers(dest="command", required=True)
    w = sub.add_parser("worker", help="run a Worker defined in a module")
    w.add_argument("target", help="module:attribute, e.g. app.tasks:worker")
    w.add_argument("--name", help="override the worker's name")
    w.add_argument("--concurrency", type=int, help="override the handlers run at once")
    args = p.parse_args(argv)
    module_name, _, attr = args.target.partition(":")
    if not module_name or not attr:
        p.error("give the worker as module:attribute, e.g. app.tasks:worker")
    sys.path.insert(0, ".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        p.error(f"cannot import {module_name}: {e}")
    worker = getattr(module, attr, None)
    if not isinstance(worker, Worker):
        p.error(f"{args.target} is not a drover.Worker (it is {type(worker).__name__})")
    if args.name:
        worker.name = args.name
    if args.concurrency:
        worker.concurrency = args.concurrency
    worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
