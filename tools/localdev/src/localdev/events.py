"""Run events, locally: the rule on moto's `default` bus that feeds the
`run-events` queue (made by `make local`), and reading that queue as a
consumer would (`make events`, and the end of `make demo`). The events
themselves come from the `run-events` function (docs/events.md)."""

from __future__ import annotations

import json
import threading
import time

from .common import REGION, say

BUS = "default"
SOURCE = "mwaa-stop"
QUEUE = "run-events"
RULE = "run-events-to-queue"


def _session_clients(aws_url: str):
    import boto3

    session = boto3.session.Session(aws_access_key_id="local", aws_secret_access_key="local", region_name=REGION)
    return session.client("sqs", endpoint_url=aws_url), session.client("events", endpoint_url=aws_url)


def create_queue_and_rule(aws_url: str) -> str:
    """The queue and the rule on the default bus matching the stack's source.
    Returns the queue URL."""
    sqs, events = _session_clients(aws_url)
    url = sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name=RULE, EventBusName=BUS, EventPattern=json.dumps({"source": [SOURCE]}))
    events.put_targets(Rule=RULE, EventBusName=BUS, Targets=[{"Id": "queue", "Arn": arn}])
    return url


def receive(aws_url: str, wait_s: int = 0) -> list[dict]:
    """The events in the queue now (deleted as read), oldest first."""
    sqs, _ = _session_clients(aws_url)
    url = sqs.get_queue_url(QueueName=QUEUE)["QueueUrl"]
    out: list[dict] = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_s).get("Messages", [])
        if not got:
            return out
        for m in got:
            out.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        wait_s = 0


def line(event: dict) -> str:
    """One event as one line: when, what, which run, who, how."""
    d = event.get("detail") or {}
    extra = [f"{k}={d[k]}" for k in ("stopRequestedBy", "finalizedBy", "workersStopped") if d.get(k) is not None]
    return (
        f"{event.get('time', '?')}  {event.get('detail-type', '?'):<40} {d.get('previousStatus') or '-':>8} → "
        f"{d.get('status', '?'):<8} run {d.get('runId', '?')}" + (f"  ({', '.join(extra)})" if extra else "")
    )


def wait_for(aws_url: str, run_id: str, statuses: set[str], timeout: float) -> list[dict]:
    """The run's events until one of each of `statuses` was seen, or `timeout`."""
    seen: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen += [e for e in receive(aws_url, wait_s=1) if (e.get("detail") or {}).get("runId") == run_id]
        if statuses <= {(e.get("detail") or {}).get("status") for e in seen}:
            break
    return seen


def tail(aws_url: str, stop: threading.Event) -> int:
    """`make events`: print every run event as it arrives, until Ctrl-C."""
    try:
        receive(aws_url)  # reachable?
    except Exception as e:
        say(f"events: no run-events queue at {aws_url} ({e.__class__.__name__}): is `make local` running?")
        return 1
    say(f"Run events on moto's {BUS} bus (source {SOURCE}), through the queue {QUEUE}; Ctrl-C stops.")
    while not stop.is_set():
        for e in receive(aws_url, wait_s=1):
            say(line(e))
    return 0
