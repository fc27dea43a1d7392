"""A local stand-in for Lambda's DynamoDB event source mapping.

It does, on this machine, what the deployed mapping (template.yaml) does:

- polls every shard of the table's stream (about 4 times a second, as Lambda
  does), from the oldest record (TRIM_HORIZON), following new shards;
- drops records that do not match the mapping's FilterCriteria, read from
  template.yaml (`template_filter`: the one definition of the pattern);
- delivers the rest in order, per shard, in batches of at most `batch_size`, to
  the function through the Lambda Invoke API (`cargo lambda watch` serves it);
- honours `ReportBatchItemFailures`: when the function reports failures, the
  batch is retried from the lowest failed sequence number; a function error
  retries the whole batch; after `max_retries` retries the remaining records
  are handed to the failure destination (here: a log line naming each run key)
  and the shard moves on, as `MaximumRetryAttempts` + `OnFailure` do.

The classes take their AWS client and invoker as arguments, so the logic is
tested with fakes (tools/localdev/tests/test_stream_mapper.py) and used for
real by the local stack (localdev.supervisor).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import cfn_template

log = logging.getLogger("stream-mapper")


def template_filter(path: str | Path = cfn_template.TEMPLATE) -> Any:
    """The deployed mapping's FilterCriteria pattern, read from the
    template: the stop-finalizer's DynamoDB event, with exactly one filter."""
    patterns = cfn_template.stream_filter_patterns(cfn_template.load(path))
    if len(patterns) != 1:
        raise cfn_template.TemplateError(
            f"{path}: {cfn_template.FINALIZER}'s stream event has {len(patterns)} filter patterns; "
            "the local mapping takes exactly one"
        )
    return patterns[0]


def matches(pattern: Any, value: Any) -> bool:
    """Lambda event-filtering semantics for the subset the template uses:
    nested objects match key by key, and a list of scalars matches when the
    value equals one of them. A missing key never matches."""
    if isinstance(pattern, dict):
        if not isinstance(value, dict):
            return False
        return all(k in value and matches(p, value[k]) for k, p in pattern.items())
    if isinstance(pattern, list):
        return any(value == p for p in pattern)
    return value == pattern


def to_lambda_record(record: dict[str, Any], stream_arn: str) -> dict[str, Any]:
    """A boto3 `GetRecords` record in the shape Lambda delivers."""
    d = dict(record["dynamodb"])
    created = d.get("ApproximateCreationDateTime")
    if hasattr(created, "timestamp"):
        d["ApproximateCreationDateTime"] = int(created.timestamp())
    out = {
        "eventID": record.get("eventID"),
        "eventName": record.get("eventName"),
        "eventVersion": record.get("eventVersion", "1.1"),
        "eventSource": "aws:dynamodb",
        "awsRegion": record.get("awsRegion", "us-east-1"),
        "dynamodb": d,
        "eventSourceARN": stream_arn,
    }
    return out


def run_key(record: dict[str, Any]) -> str:
    keys = record.get("dynamodb", {}).get("Keys", {})
    arn = keys.get("WorkflowArn", {}).get("S", "?")
    run = keys.get("RunId", {}).get("S", "?")
    return f"{arn}/{run}"


class InvokeError(Exception):
    """The function failed as a whole (error, timeout, not reachable)."""


def http_invoker(base_url: str, function: str, timeout: float = 900.0) -> Callable[[dict], dict]:
    """Invoke `function` through the Lambda Invoke API at `base_url`."""
    url = f"{base_url}/2015-03-31/functions/{function}/invocations"

    def invoke(event: dict) -> dict:
        req = urllib.request.Request(url, data=json.dumps(event).encode(), method="POST")
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                body = resp.read()
                if resp.headers.get("X-Amz-Function-Error"):
                    raise InvokeError(f"function error: {body[:500]!r}")
        except urllib.error.HTTPError as e:
            raise InvokeError(f"HTTP {e.code}: {e.read()[:500]!r}") from e
        except (urllib.error.URLError, TimeoutError, OSError) as e:
            raise InvokeError(str(e)) from e
        try:
            return json.loads(body or b"{}") or {}
        except json.JSONDecodeError as e:
            raise InvokeError(f"response is not JSON: {body[:200]!r}") from e

    return invoke


@dataclass
class Delivery:
    """What happened to one batch, for logs and tests."""

    sequence_numbers: list[str]
    attempts: int
    failed_to_destination: list[str] = field(default_factory=list)


class BatchDeliverer:
    """Delivers one batch with the partial-failure retry rules."""

    def __init__(
        self,
        invoke: Callable[[dict], dict],
        max_retries: int = 3,
        on_failure: Callable[[list[dict], str], None] | None = None,
        backoff: Callable[[int], None] = lambda attempt: time.sleep(min(0.25 * 2**attempt, 2.0)),
    ):
        self.invoke = invoke
        self.max_retries = max_retries
        self.on_failure = on_failure or self._log_failure
        self.backoff = backoff

    @staticmethod
    def _log_failure(records: list[dict], why: str) -> None:
        for r in records:
            log.error(
                "FAILURE DESTINATION: run %s record %s (%s)",
                run_key(r),
                r["dynamodb"].get("SequenceNumber"),
                why,
            )

    def deliver(self, records: list[dict]) -> Delivery:
        pending = list(records)
        attempt = 0
        delivery = Delivery([r["dynamodb"]["SequenceNumber"] for r in records], 0)
        while pending:
            delivery.attempts += 1
            why = ""
            try:
                resp = self.invoke({"Records": pending})
                failed = {
                    f.get("itemIdentifier")
                    for f in (resp.get("batchItemFailures") or [])
                    if isinstance(f, dict)
                }
                if not failed:
                    return delivery
                seqs = [r["dynamodb"]["SequenceNumber"] for r in pending]
                known = [s for s in seqs if s in failed]
                # Lambda retries from the lowest failed sequence number; an
                # identifier it does not know means the whole batch failed.
                start = seqs.index(known[0]) if known and len(known) == len(failed) else 0
                pending = pending[start:]
                why = f"batch item failure(s) {sorted(failed)}"
            except InvokeError as e:
                why = f"function error: {e}"
            if attempt >= self.max_retries:
                self.on_failure(pending, f"retries exhausted after {attempt + 1} attempts; last: {why}")
                delivery.failed_to_destination = [r["dynamodb"]["SequenceNumber"] for r in pending]
                return delivery
            log.warning("retrying %d record(s): %s", len(pending), why)
            self.backoff(attempt)
            attempt += 1
        return delivery


class StreamMapper:
    """Polls a stream's shards and delivers the records that match
    `filter_pattern` (None: every record) in batches."""

    def __init__(
        self,
        streams: Any,
        stream_arn: str,
        deliverer: BatchDeliverer,
        filter_pattern: Any,
        batch_size: int = 100,
        poll_interval: float = 0.25,
    ):
        self.streams = streams
        self.stream_arn = stream_arn
        self.deliverer = deliverer
        self.filter = filter_pattern
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.iterators: dict[str, str | None] = {}
        self.deliveries: list[Delivery] = []
        self.filtered_out = 0
        self._stop = threading.Event()

    def _discover_shards(self) -> None:
        desc = self.streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]
        for shard in desc.get("Shards", []):
            sid = shard["ShardId"]
            if sid not in self.iterators:
                it = self.streams.get_shard_iterator(
                    StreamArn=self.stream_arn, ShardId=sid, ShardIteratorType="TRIM_HORIZON"
                )["ShardIterator"]
                self.iterators[sid] = it

    def poll_once(self) -> int:
        """One pass over every shard. Returns how many records were delivered."""
        self._discover_shards()
        delivered = 0
        for sid, it in list(self.iterators.items()):
            if it is None:
                continue
            out = self.streams.get_records(ShardIterator=it, Limit=1000)
            self.iterators[sid] = out.get("NextShardIterator")
            records = [to_lambda_record(r, self.stream_arn) for r in out.get("Records", [])]
            kept = [r for r in records if self.filter is None or matches(self.filter, r)]
            self.filtered_out += len(records) - len(kept)
            for i in range(0, len(kept), self.batch_size):
                batch = kept[i : i + self.batch_size]
                self.deliveries.append(self.deliverer.deliver(batch))
                delivered += len(batch)
        return delivered

    def run(self) -> None:
        """Poll until `stop()`; errors are logged and the poll goes on."""
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception as e:  # a poller must outlive a passing fault
                log.error("stream poll failed: %s", e)
            self._stop.wait(self.poll_interval)

    def stop(self) -> None:
        self._stop.set()
