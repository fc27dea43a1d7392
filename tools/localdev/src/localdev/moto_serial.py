"""moto's server, with each request handled atomically.

moto's own `moto_server` handles requests on threads with no lock around a
DynamoDB conditional write, so two concurrent `UpdateItem`s can both pass their
condition: real DynamoDB never allows that, and the tests that count "exactly
one STOPPING transition out of N concurrent stops" would be testing moto rather
than this project. This wrapper keeps moto's threaded server (connections are
still accepted concurrently) but runs one request at a time through the
backends, which is the atomicity real DynamoDB gives per item.

It also makes moto's `UpdateItem` all or nothing: moto applies an update
expression action by action to the stored item, so an update that passes the
item size limit half-way (`Item size to update has exceeded the maximum
allowed size`) leaves the first actions applied. DynamoDB applies none of
them. The item is restored when moto's update fails.

Usage: python -m localdev.moto_serial [-H HOST] [-p PORT]
"""

import argparse
import copy
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


def make_updates_atomic() -> None:
    """DynamoDB checks an update's item size once, on the item as the whole
    update leaves it, and applies the update wholly or not at all. moto checks
    after each action (and counts a replaced value twice), and keeps the
    actions applied before the one that failed. Emulate DynamoDB: no check
    during the update, one check of the final item against moto's limit, and
    the item restored when the update fails."""
    from moto.dynamodb.exceptions import ItemSizeToUpdateTooLarge
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models import dynamo_type

    limit = 405000  # moto's own (LimitedSizeDict)
    checking = threading.local()
    limited_setitem = dynamo_type.LimitedSizeDict.__setitem__

    def setitem(self, key, value):
        if getattr(checking, "deferred", False):
            dict.__setitem__(self, key, value)
        else:
            limited_setitem(self, key, value)

    dynamo_type.LimitedSizeDict.__setitem__ = setitem
    original = DynamoDBBackend.update_item

    def update_item(self, table_name, key, *args, **kwargs):
        try:
            table = self.get_table(table_name)
            hash_value, range_value = self.get_keys_value(table, key)
            stored = table.get_item(hash_value, range_value)
        except Exception:
            return original(self, table_name, key, *args, **kwargs)  # moto reports the problem
        saved = copy.deepcopy(dict(stored.attrs)) if stored is not None else None

        def restore():
            stored.attrs.clear()
            dict.update(stored.attrs, saved)

        if stored is None:
            return original(self, table_name, key, *args, **kwargs)  # a new item: moto's own checks
        shard = table.stream_shard
        records_before = len(shard.items) if shard is not None else 0
        checking.deferred = True
        try:
            item = original(self, table_name, key, *args, **kwargs)
        except Exception:
            restore()
            raise
        finally:
            checking.deferred = False
        if item.size() > limit:
            restore()
            if shard is not None:
                del shard.items[records_before:]  # the update never happened
            raise ItemSizeToUpdateTooLarge()
        return item

    DynamoDBBackend.update_item = update_item


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=int(os.environ.get("MOTO_PORT", 5000)))
    args = parser.parse_args()
    os.environ.setdefault("MOTO_PORT", str(args.port))
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: sys.exit(0))
    make_updates_atomic()
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(args.host, args.port, Serialized(app), threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
