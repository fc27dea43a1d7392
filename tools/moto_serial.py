"""moto's server, with each request handled atomically.

moto's own `moto_server` handles requests on threads with no lock around a
DynamoDB conditional write, so two concurrent `UpdateItem`s can both pass their
condition: real DynamoDB never allows that, and the tests that count "exactly
one STOPPING transition out of N concurrent stops" would be testing moto rather
than this project. This wrapper keeps moto's threaded server (connections are
still accepted concurrently) but runs one request at a time through the
backends, which is the atomicity real DynamoDB gives per item.

Usage: python tools/moto_serial.py [-H HOST] [-p PORT]
"""

import argparse
import os
import signal
import sys
import threading

from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)


class Serialized:
    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        with self.lock:
            # Materialize the body inside the lock: moto builds it eagerly, but
            # a lazy iterable would otherwise run outside it.
            return list(self.app(environ, start_response))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=int(os.environ.get("MOTO_PORT", 5000)))
    args = parser.parse_args()
    os.environ.setdefault("MOTO_PORT", str(args.port))
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(args.host, args.port, Serialized(app), threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
