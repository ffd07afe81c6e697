"""`python -m switchboard_rpc`: serve a module's functions, or call one.

    python -m switchboard_rpc worker myapp.rpc:registry --broker tcp://broker:5556
    python -m switchboard_rpc call add 2 3 --endpoint tcp://127.0.0.1:5555
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from typing import Any, List, Optional

from .client import Client
from .errors import RemoteError, SwitchboardError
from .worker import as_worker


def _load(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    sys.path.insert(0, os.getcwd())
    module = importlib.import_module(module_name)
    if not attr:
        return module
    value: Any = module
    for part in attr.split("."):
        value = getattr(value, part)
    return value


def _argument(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text  # a bare word is a string, as in the Rust CLI


def _printable(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"$bin": value.hex()}
    if isinstance(value, dict):
        return {str(k): _printable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_printable(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m switchboard_rpc", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("worker", help="serve a Registry or Worker (module:attr) until SIGTERM/SIGINT")
    serve.add_argument("target", help="module:attribute holding a Registry or a Worker (or a module with 'registry')")
    serve.add_argument("--broker", help="the broker's backend endpoint [env SWITCHBOARD_BROKER, default tcp://127.0.0.1:5556]")
    serve.add_argument("--name", help="the name announced to the broker [env SWITCHBOARD_WORKER_NAME, else $HOSTNAME]")
    serve.add_argument("--threads", type=int, help="threads running plain functions [env SWITCHBOARD_THREADS, default 4]")
    serve.add_argument("--log-level", default=os.environ.get("SWITCHBOARD_LOG", "info"))
    call = commands.add_parser("call", help="call a function; each argument is JSON (a bare word is a string), key=value is a keyword argument")
    call.add_argument("function")
    call.add_argument("arguments", nargs="*")
    call.add_argument("--endpoint", default=os.environ.get("SWITCHBOARD_ENDPOINT", "tcp://127.0.0.1:5555"))
    call.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
    args = parser.parse_args(argv)

    if args.command == "worker":
        logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        try:
            options = {k: v for k, v in (("broker", args.broker), ("name", args.name),
                                         ("threads", args.threads)) if v is not None}
            worker = as_worker(_load(args.target), **options)
            for key, value in options.items():  # a ready-made Worker: the flags still win
                setattr(worker, key, value)
            worker.run()
        except (ImportError, AttributeError, TypeError, ValueError, SwitchboardError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        return 0

    positional, keywords = [], {}
    for text in args.arguments:
        key, sep, value = text.partition("=")
        if sep and key.isidentifier():
            keywords[key] = _argument(value)
        else:
            positional.append(_argument(text))
    try:
        with Client(args.endpoint, timeout=args.timeout) as client:
            result = client.call(args.function, *positional, **keywords)
    except RemoteError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except (SwitchboardError, ValueError, TypeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(_printable(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
