"""Tests of the local stack's process supervisor that need no running stack:
stop signals cut a blocking call short, and every process it starts is
recorded and obeys SIGTERM (localdev/supervisor.py).
Run by `make test` (`.venv/bin/python -m pytest tools/localdev/tests`)."""

import os
import pathlib
import signal
import socket
import sys
import threading
import time

import pytest

from localdev.supervisor import _STOP, STOP_SIGNALS, Interrupted, Stack, http, install_stop_signals


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
        started = time.monotonic()
        with pytest.raises(Interrupted):
            _stop_signal_soon(sig)
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


def test_a_process_started_while_a_signal_arrives_is_recorded_and_does_not_inherit_a_blocked_mask(tmp_path):
    """A signal that lands while a process is being started raises only once
    the process is recorded, and the process itself still obeys SIGTERM."""
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    stack = Stack(0, 0, tmp_path)
    try:
        install_stop_signals(stack.cancel)
        with pytest.raises(Interrupted):
            with _STOP.deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.1)  # delivered here, but deferred
                stack._spawn([sys.executable, "-c", "import time; time.sleep(60)"], "sleeper.log")
        assert len(stack.procs) == 1, "the process was recorded before Interrupted was raised"
        child = stack.procs[0]
        status = pathlib.Path(f"/proc/{child.pid}/status").read_text()
        blocked = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigBlk:")), 16)
        assert blocked & ((1 << (signal.SIGTERM - 1)) | (1 << (signal.SIGINT - 1))) == 0, status
        started = time.monotonic()
        stack.stop()
        assert child.returncode is not None
        assert time.monotonic() - started < 10, "SIGTERM stopped it, not the SIGKILL after the grace period"
    finally:
        for p in stack.procs:
            if p.poll() is None:
                p.kill()
        for s, handler in previous.items():
            signal.signal(s, handler)


def test_stop_reaches_a_descendant_in_a_process_group_of_its_own(tmp_path):
    """A child that put itself in a new session (as `cargo lambda watch` does
    with the `cargo run` it starts) is outside the group `stop()` signals;
    it is still stopped, by SIGTERM, well within the grace period."""
    stack = Stack(0, 0, tmp_path)
    pidfile = tmp_path / "grandchild.pid"
    script = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'], start_new_session=True)\n"
        f"open({str(pidfile)!r}, 'w').write(str(child.pid))\n"
        "child.wait()\n"
    )
    try:
        stack._spawn([sys.executable, "-c", script], "parent.log")
        deadline = time.monotonic() + 20
        while not (pidfile.exists() and pidfile.read_text()):
            assert time.monotonic() < deadline, "the grandchild never started"
            time.sleep(0.05)
        grandchild = int(pidfile.read_text())
        assert os.getpgid(grandchild) != os.getpgid(stack.procs[0].pid), "the grandchild has a group of its own"
        started = time.monotonic()
        stack.stop()
        assert time.monotonic() - started < 10, "SIGTERM stopped it, not the SIGKILL after the grace period"
        stat = pathlib.Path(f"/proc/{grandchild}/stat")
        assert not stat.exists() or stat.read_text().split(")")[1].split()[0] == "Z", "the grandchild is still running"
    finally:
        for p in stack.procs:
            if p.poll() is None:
                p.kill()
