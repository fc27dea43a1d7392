"""Tests of the local reconciler schedule (localdev/reconciler.py)
against a stand-in for `cargo lambda watch`'s Lambda Invoke API: a pass every
period, start to start, never two at once, failures logged and survived,
and `stop()` ending the loop.
Run by `make test` (`.venv/bin/python -m pytest tools/localdev/tests`)."""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from localdev.reconciler import FUNCTION, ReconcilerLoop
from localdev.stream_mapper import http_invoker

ANSWER = {"found": 0, "stopped": 0, "pending": 0, "failed": 0, "oldest_stopping_age_seconds": 0}


class InvokeApi:
    """The Lambda Invoke API of `cargo lambda watch`, for one function: records
    each call (path, body, start, end) and answers ANSWER after `delay`
    seconds, or a function error when `fail` is set."""

    def __init__(self, delay: float = 0.0, fail: bool = False):
        self.calls: list[dict] = []
        self.delay, self.fail = delay, fail
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with api.lock:
                    api.in_flight += 1
                    api.max_in_flight = max(api.max_in_flight, api.in_flight)
                started = time.monotonic()
                time.sleep(api.delay)
                with api.lock:
                    api.in_flight -= 1
                    api.calls.append({"path": self.path, "body": body, "start": started, "end": time.monotonic()})
                out = json.dumps({"errorMessage": "boom"} if api.fail else ANSWER).encode()
                self.send_response(200)
                if api.fail:
                    self.send_header("X-Amz-Function-Error", "Unhandled")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *_):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def reconciler_log(tmp_path):
    path = tmp_path / "reconciler.log"
    handler = logging.FileHandler(path)
    logger = logging.getLogger("reconciler")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield path
    logger.removeHandler(handler)
    handler.close()


def start(loop: ReconcilerLoop) -> threading.Thread:
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    return thread


def test_it_invokes_the_reconciler_every_period_with_an_empty_event_and_logs_each_answer(reconciler_log):
    api = InvokeApi()
    try:
        loop = ReconcilerLoop(http_invoker(api.base_url, FUNCTION, timeout=10), period=0.2)
        thread = start(loop)
        time.sleep(1.05)
        loop.stop()
        thread.join(timeout=1)
        assert not thread.is_alive(), "stop() ends a waiting loop at once"
        calls = list(api.calls)
        assert 5 <= len(calls) <= 7, calls
        assert all(c["path"] == "/2015-03-31/functions/stop-reconciler/invocations" for c in calls)
        assert all(json.loads(c["body"]) == {} for c in calls)
        gaps = [b["start"] - a["start"] for a, b in zip(calls, calls[1:])]
        assert all(0.15 <= g <= 0.3 for g in gaps), gaps
        assert loop.results == [ANSWER] * len(calls)
        lines = reconciler_log.read_text().splitlines()
        assert len(lines) == len(calls)
        assert all(json.dumps(ANSWER, sort_keys=True) in line for line in lines), lines
        time.sleep(0.5)
        assert len(api.calls) == len(calls), "no pass after stop()"
    finally:
        api.close()


def test_a_pass_longer_than_the_period_is_never_overlapped_and_the_ticks_it_spans_are_skipped():
    api = InvokeApi(delay=0.5)
    try:
        loop = ReconcilerLoop(http_invoker(api.base_url, FUNCTION, timeout=10), period=0.2)
        thread = start(loop)
        time.sleep(1.4)
        loop.stop()
        thread.join(timeout=2)
        assert not thread.is_alive()
        assert api.max_in_flight == 1
        calls = api.calls
        assert 2 <= len(calls) <= 3, calls
        # The next pass starts on a tick (a multiple of the period after the
        # first), right after the slow one ended.
        for a, b in zip(calls, calls[1:]):
            assert b["start"] >= a["end"] - 0.01
            assert b["start"] - a["end"] < 0.25
    finally:
        api.close()


def test_a_failing_pass_is_logged_and_the_loop_goes_on(reconciler_log):
    api = InvokeApi(fail=True)
    try:
        loop = ReconcilerLoop(http_invoker(api.base_url, FUNCTION, timeout=10), period=0.1)
        thread = start(loop)
        time.sleep(0.45)
        loop.stop()
        thread.join(timeout=1)
        assert loop.failures == loop.passes >= 3
        text = reconciler_log.read_text()
        assert text.count("failed") == loop.passes and "function error" in text
    finally:
        api.close()


def test_an_unreachable_function_is_a_logged_failure_not_a_crash(reconciler_log):
    api = InvokeApi()
    url = api.base_url
    api.close()  # nothing listens there now
    loop = ReconcilerLoop(http_invoker(url, FUNCTION, timeout=2), period=0.1)
    assert loop.run_once() is None
    assert loop.failures == 1
    assert "pass 1 failed" in reconciler_log.read_text()


def test_stop_ends_a_long_wait_at_once():
    api = InvokeApi()
    try:
        loop = ReconcilerLoop(http_invoker(api.base_url, FUNCTION, timeout=10), period=3600)
        thread = start(loop)
        deadline = time.monotonic() + 5
        while not api.calls and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(api.calls) == 1, "the first pass runs at once"
        stopped = time.monotonic()
        loop.stop()
        thread.join(timeout=2)
        assert not thread.is_alive() and time.monotonic() - stopped < 0.5
    finally:
        api.close()


def test_the_period_must_be_positive():
    with pytest.raises(ValueError):
        ReconcilerLoop(lambda event: {}, period=0)
