"""The local stand-in for the reconciler's schedule: every `period` seconds
it invokes `stop-reconciler` (through the Lambda Invoke API that `cargo lambda
watch` serves, like the stream mapping's deliveries to `stop-finalizer`) with
the empty event `{}`, and logs each pass's answer, one line a pass:

    2026-12-01 10:00:10,002 INFO pass 3: {"found": 1, "stopped": 1, ...} (0.41 s)

Passes are started `period` apart, start to start, one at a time: a pass
that takes longer than a period is not overlapped, the ticks it spans are
skipped (in AWS two ticks may overlap; that is harmless there and only noise
here). `stop()` ends the loop at once when it is waiting, and after the pass
in flight otherwise."""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Callable

from .stream_mapper import InvokeError

log = logging.getLogger("reconciler")

FUNCTION = "stop-reconciler"


class ReconcilerLoop:
    def __init__(self, invoke: Callable[[dict], dict], period: float, clock: Callable[[], float] = time.monotonic):
        if period <= 0:
            raise ValueError("period must be positive")
        self.invoke = invoke
        self.period = period
        self.clock = clock
        self.passes = 0
        self.failures = 0
        self.results: list[dict] = []
        self._stop = threading.Event()

    def run_once(self) -> dict | None:
        """One pass: the function's answer, or None when it failed (logged)."""
        self.passes += 1
        started = self.clock()
        try:
            out = self.invoke({})
        except InvokeError as e:
            self.failures += 1
            log.error("pass %d failed after %.2f s: %s", self.passes, self.clock() - started, e)
            return None
        except Exception as e:  # the loop must outlive a passing fault
            self.failures += 1
            log.error("pass %d failed after %.2f s: %s: %s", self.passes, self.clock() - started, e.__class__.__name__, e)
            return None
        self.results.append(out)
        log.info("pass %d: %s (%.2f s)", self.passes, json.dumps(out, sort_keys=True), self.clock() - started)
        return out

    def run(self) -> None:
        """Pass, then wait for the next tick; until `stop()`."""
        next_at = self.clock()
        while not self._stop.is_set():
            self.run_once()
            now = self.clock()
            next_at += self.period
            if next_at <= now:  # the pass took longer than a period: skip the ticks it spanned
                next_at += self.period * ((now - next_at) // self.period + 1)
            self._stop.wait(next_at - now)

    def stop(self) -> None:
        self._stop.set()
