"""Tests of the demo tour's printing that do not need a running stack.
Run by `make test` (`.venv/bin/python -m pytest tools`)."""

import os
import signal
import socket
import threading
import time

import pytest

from local_stack import STOP_SIGNALS, Interrupted, event_detail_keys, http, install_stop_signals


def test_event_details_print_in_one_order_whatever_order_the_table_returns():
    stopped = {"Event": {"S": "Stopped"}, "At": {"S": "t"}, "OrphansStopped": {"N": "0"}, "WorkersStopped": {"N": "4"}}
    reordered = dict(reversed(list(stopped.items())))
    assert event_detail_keys(stopped) == ["WorkersStopped", "OrphansStopped"]
    assert event_detail_keys(reordered) == ["WorkersStopped", "OrphansStopped"]


def test_stop_requested_details_lead_with_the_caller_and_unknown_keys_come_last_sorted():
    event = {
        "Zeta": {"S": "z"},
        "Operation": {"S": "StopWorkflowRun"},
        "SourceIp": {"S": "127.0.0.1"},
        "Alpha": {"S": "a"},
        "RequestId": {"S": "r"},
        "By": {"S": "arn:aws:iam::123456789012:user/ops"},
        "Event": {"S": "StopRequested"},
        "At": {"S": "t"},
    }
    assert event_detail_keys(event) == ["By", "RequestId", "SourceIp", "Operation", "Alpha", "Zeta"]


def _stop_signal_soon(sig, delay=0.3):
    timer = threading.Timer(delay, os.kill, (os.getpid(), sig))
    timer.start()
    return timer


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_cuts_a_blocking_call_short_and_later_ones_are_absorbed(sig):
    """The first request to `cargo lambda watch` blocks for the whole first
    build; Ctrl-C or SIGTERM must end it at once, not when the build is done."""
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    server = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    cancel = threading.Event()
    try:
        install_stop_signals(cancel)
        _stop_signal_soon(sig)
        started = time.monotonic()
        with pytest.raises(Interrupted):
            http("GET", f"http://127.0.0.1:{server.getsockname()[1]}/", timeout=120)
        assert time.monotonic() - started < 30, "interrupted long before the request's own timeout"
        assert cancel.is_set()
        # While the stack is being stopped, further signals change nothing.
        _stop_signal_soon(sig, delay=0).join()
        time.sleep(0.2)
    finally:
        server.close()
        for s, handler in previous.items():
            signal.signal(s, handler)


def test_no_catch_all_swallows_the_interruption():
    assert not issubclass(Interrupted, Exception)
