"""The local stack's supervisor started for real (moto, the stream mapping,
the reconciler's schedule), with a stand-in for `cargo lambda watch`: a
script in place of the virtualenv's `cargo-lambda` that serves the three
functions' Invoke API (and run-api's function URL) with canned answers and
records every call and its own command line. It shows what the real binaries
cannot show before they exist: the functions' local environment
(RECONCILE_AFTER_MS from LOCAL_RECONCILE_AFTER_MS, METRICS_STACK,
STOPPING_INDEX), the run table's StoppingRuns index in moto,
LOCAL_STREAM_MAPPING=off starting no mapping, the reconciler invoked every
LOCAL_RECONCILE_PERIOD seconds into reconciler.log, and nothing left running
or invoked after `stop()`.
Run by `make test` (`.venv/bin/python -m pytest tools/localdev/tests`)."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

import pytest

import localdev.supervisor as supervisor
from localdev.common import TABLE
from localdev.supervisor import Stack

FAKE_WATCH = r'''#!{python}
import json, os, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

args = sys.argv[1:]
record = os.environ["FAKE_WATCH_RECORD"]
with open(record + ".args", "w") as f:
    json.dump(args, f)
ANSWERS = {{
    "stop-finalizer": {{"batchItemFailures": []}},
    "run-events": {{"batchItemFailures": []}},
    "stop-reconciler": {{"found": 0, "stopped": 0, "pending": 0, "failed": 0, "oldest_stopping_age_seconds": 0}},
}}

class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open(record, "a") as f:
            f.write(json.dumps({{"path": self.path, "body": body.decode(), "at": time.time()}}) + "\n")
        headers = {{}}
        if self.path.startswith("/lambda-url/run-api"):
            status, out = 400, {{"__type": "ResourceNotFoundException", "message": "no such run"}}
            headers["x-amzn-ErrorType"] = "ResourceNotFoundException"
        else:
            name = self.path.split("/functions/")[-1].split("/")[0]
            status, out = (200, ANSWERS[name]) if name in ANSWERS else (404, {{"message": "no function " + name}})
        data = json.dumps(out).encode()
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_):
        pass

ThreadingHTTPServer(("127.0.0.1", int(args[args.index("-P") + 1])), Handler).serve_forever()
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def fake_watch(tmp_path, monkeypatch):
    """The virtualenv's bin directory as the supervisor sees it, with the
    stand-in `cargo-lambda`; returns the file its calls are recorded in."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "cargo-lambda"
    script.write_text(FAKE_WATCH.format(python=sys.executable))
    script.chmod(0o755)
    monkeypatch.setattr(supervisor, "BIN", bin_dir)
    record = tmp_path / "watch-calls.jsonl"
    monkeypatch.setenv("FAKE_WATCH_RECORD", str(record))
    return record


def calls(record: Path, function: str) -> list[dict]:
    if not record.exists():
        return []
    out = [json.loads(line) for line in record.read_text().splitlines() if line]
    return [c for c in out if f"/functions/{function}/" in c["path"]]


def started_stack(tmp_path, capsys) -> tuple[Stack, str]:
    stack = Stack(free_port(), free_port(), tmp_path / "logs")
    try:
        stack.start()
    except BaseException:
        stack.stop()
        raise
    return stack, capsys.readouterr().out


def test_with_the_stream_mapping_off_only_the_reconciler_runs_at_its_period(tmp_path, capsys, monkeypatch, fake_watch):
    monkeypatch.setenv("LOCAL_STREAM_MAPPING", "off")
    monkeypatch.setenv("LOCAL_RECONCILE_PERIOD", "0.4")
    monkeypatch.setenv("LOCAL_RECONCILE_AFTER_MS", "2000")
    stack, out = started_stack(tmp_path, capsys)
    try:
        assert "- stream mapping: off (LOCAL_STREAM_MAPPING=off): runs are finalized by the reconciler alone" in out
        assert "- reconciler: stop-reconciler every 0.4 s, finalizing runs STOPPING longer than 2000 ms" in out
        assert "under cargo lambda watch" in out and "- all four functions built and warm" in out
        assert stack.mapper is None and stack.mapper_thread is None

        # The functions' environment, as `cargo lambda watch` got it.
        args = json.loads(Path(str(fake_watch) + ".args").read_text())
        env = dict(kv.split("=", 1) for kv in args[args.index("--env-var") + 1].split(","))
        assert env["RECONCILE_AFTER_MS"] == "2000"
        assert env["METRICS_STACK"] == "local"
        assert env["STOPPING_INDEX"] == "StoppingRuns"
        assert env["RUNS_TABLE"] == TABLE

        # The run table has the template's sparse index: a STOPPING run (with
        # the index keys) is in it, a RUNNING one is not.
        table = stack.ddb.describe_table(TableName=TABLE)["Table"]
        (gsi,) = table["GlobalSecondaryIndexes"]
        assert gsi["IndexName"] == "StoppingRuns"
        assert {k["AttributeName"]: k["KeyType"] for k in gsi["KeySchema"]} == {"StoppingShard": "HASH", "StoppingSince": "RANGE"}
        assert gsi["Projection"]["ProjectionType"] == "KEYS_ONLY"
        stack.ddb.put_item(TableName=TABLE, Item={"WorkflowArn": {"S": "a"}, "RunId": {"S": "r1"}, "Status": {"S": "STOPPING"},
                                                  "StoppingShard": {"S": "3"}, "StoppingSince": {"S": "2026-11-21T10:00:00.000Z"}})
        stack.ddb.put_item(TableName=TABLE, Item={"WorkflowArn": {"S": "a"}, "RunId": {"S": "r2"}, "Status": {"S": "RUNNING"}})
        found = stack.ddb.query(TableName=TABLE, IndexName="StoppingRuns", KeyConditionExpression="StoppingShard = :s",
                                ExpressionAttributeValues={":s": {"S": "3"}})["Items"]
        assert [i["RunId"]["S"] for i in found] == ["r1"]

        # The schedule: the warm-up call, then a pass every 0.4 s.
        first = len(calls(fake_watch, "stop-reconciler"))
        time.sleep(2.1)
        ticks = calls(fake_watch, "stop-reconciler")[first:]
        assert 4 <= len(ticks) <= 7, ticks
        assert all(json.loads(c["body"]) == {} for c in ticks)
        gaps = [b["at"] - a["at"] for a, b in zip(ticks, ticks[1:])]
        assert all(0.3 <= g <= 0.6 for g in gaps), gaps
        finalizer_calls = len(calls(fake_watch, "stop-finalizer"))
        assert finalizer_calls == 1, "only the warm-up call: no stream mapping delivers to the finalizer"
    finally:
        stack.stop()
    after = len(calls(fake_watch, "stop-reconciler"))
    assert all(p.poll() is not None for p in stack.procs), "every process stopped"
    assert not stack.reconciler_thread.is_alive()
    log = (tmp_path / "logs" / "reconciler.log").read_text().splitlines()
    assert len(log) >= 4 and all('"found": 0' in line for line in log), log
    time.sleep(0.8)
    assert len(calls(fake_watch, "stop-reconciler")) == after, "no pass after stop()"


def test_by_default_the_stream_mapping_runs_beside_the_reconciler(tmp_path, capsys, monkeypatch, fake_watch):
    for var in ("LOCAL_STREAM_MAPPING", "LOCAL_RECONCILE_PERIOD", "LOCAL_RECONCILE_AFTER_MS"):
        monkeypatch.delenv(var, raising=False)
    stack, out = started_stack(tmp_path, capsys)
    try:
        assert "- stream mapping: run table stream → stop-finalizer" in out
        assert "- stream mapping: run table stream → run-events (every record)" in out
        assert stack.events_mapper_thread is not None and stack.events_mapper_thread.is_alive()
        assert "- reconciler: stop-reconciler every 10 s, finalizing runs STOPPING longer than 5000 ms" in out
        assert stack.mapper_thread is not None and stack.mapper_thread.is_alive()
        args = json.loads(Path(str(fake_watch) + ".args").read_text())
        assert "RECONCILE_AFTER_MS=5000" in args[args.index("--env-var") + 1].split(",")
        deadline = time.monotonic() + 5
        while len(calls(fake_watch, "stop-reconciler")) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(calls(fake_watch, "stop-reconciler")) == 2, "the warm-up call, then the first pass at once"
    finally:
        stack.stop()
    assert not stack.mapper_thread.is_alive() and not stack.reconciler_thread.is_alive()
    assert not stack.events_mapper_thread.is_alive()
