"""Tests of the local event source mapping: filtering, batching, ordering,
partial-failure retry, the bounded failure path, and shard iteration.
Run by `make test` (`.venv/bin/python -m pytest tools/localdev/tests`)."""

import datetime
import json
import pathlib

import pytest

from localdev.stream_mapper import (
    BatchDeliverer,
    InvokeError,
    StreamMapper,
    matches,
    template_filter,
    to_lambda_record,
)

# The local mapping's filter: the one in template.yaml.
STOPPING_FILTER = template_filter()

ARN = "arn:aws:airflow-serverless:us-east-1:123456789012:workflow/etl-abcDEF1234"


def rec(seq: int, status: str | None, run: str = "r1", event: str = "MODIFY") -> dict:
    image = {"WorkflowArn": {"S": ARN}, "RunId": {"S": run}}
    if status is not None:
        image["Status"] = {"S": status}
    return {
        "eventID": f"e{seq}",
        "eventName": event,
        "eventVersion": "1.1",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": datetime.datetime(2026, 11, 21, tzinfo=datetime.timezone.utc),
            "Keys": {"WorkflowArn": {"S": ARN}, "RunId": {"S": run}},
            "NewImage": image,
            "SequenceNumber": str(seq),
            "SizeBytes": 10,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }


class FakeStreams:
    """Two shards; `get_records` hands out pre-loaded pages in order."""

    def __init__(self, pages: dict[str, list[list[dict]]]):
        self.pages = {sid: list(p) for sid, p in pages.items()}

    def describe_stream(self, StreamArn):
        return {"StreamDescription": {"Shards": [{"ShardId": s} for s in self.pages]}}

    def get_shard_iterator(self, StreamArn, ShardId, ShardIteratorType):
        assert ShardIteratorType == "TRIM_HORIZON"
        return {"ShardIterator": f"{ShardId}:0"}

    def get_records(self, ShardIterator, Limit):
        sid, n = ShardIterator.split(":")
        n = int(n)
        pages = self.pages[sid]
        records = pages[n] if n < len(pages) else []
        return {"Records": records, "NextShardIterator": f"{sid}:{n + 1 if n < len(pages) else n}"}


class Recorder:
    """An invoker that records each batch and answers from a script."""

    def __init__(self, answers=None):
        self.batches: list[list[str]] = []
        self.answers = list(answers or [])

    def __call__(self, event):
        self.batches.append([r["dynamodb"]["SequenceNumber"] for r in event["Records"]])
        if self.answers:
            a = self.answers.pop(0)
            if isinstance(a, Exception):
                raise a
            return a
        return {"batchItemFailures": []}


def no_wait(_attempt):
    pass


def test_filter_is_the_templates_and_matches_only_stopping():
    assert matches(STOPPING_FILTER, to_lambda_record(rec(1, "STOPPING"), "s"))
    for status in ["RUNNING", "STOPPED", "stopping", None]:
        assert not matches(STOPPING_FILTER, to_lambda_record(rec(1, status), "s")), status
    removed = to_lambda_record(rec(1, "STOPPING"), "s")
    del removed["dynamodb"]["NewImage"]
    assert not matches(STOPPING_FILTER, removed)


def test_template_declares_the_same_filter():
    """The whole template declares exactly one DynamoDB stream filter, and it
    is the one the local mapping reads (`template_filter`)."""
    template = pathlib.Path(__file__).resolve().parents[3] / "template.yaml"
    if not template.exists():
        pytest.fail("template.yaml is missing: the mapping's filter has nothing to be compared with")
    from cfnlint.decode import decode

    doc, errors = decode(str(template))
    assert not errors, errors
    patterns = []
    for res in doc["Resources"].values():
        for ev in (res.get("Properties", {}).get("Events") or {}).values():
            # run-events reads every record: it declares no filter.
            if ev.get("Type") == "DynamoDB" and ev["Properties"].get("FilterCriteria"):
                for f in ev["Properties"]["FilterCriteria"]["Filters"]:
                    patterns.append(json.loads(f["Pattern"]))
    assert patterns == [STOPPING_FILTER]


def test_lambda_record_shape():
    r = to_lambda_record(rec(7, "STOPPING"), "arn:stream")
    assert r["eventSource"] == "aws:dynamodb"
    assert r["eventSourceARN"] == "arn:stream"
    assert r["dynamodb"]["ApproximateCreationDateTime"] == 1795219200
    assert r["dynamodb"]["SequenceNumber"] == "7"


def test_batches_in_order_of_at_most_batch_size_and_drops_filtered():
    page = [rec(i, "STOPPING" if i % 2 else "RUNNING", run=f"r{i}") for i in range(1, 12)]
    inv = Recorder()
    m = StreamMapper(FakeStreams({"s1": [page]}), "arn:stream", BatchDeliverer(inv, backoff=no_wait), STOPPING_FILTER, batch_size=2)
    assert m.poll_once() == 6
    assert inv.batches == [["1", "3"], ["5", "7"], ["9", "11"]]
    assert m.filtered_out == 5
    assert m.poll_once() == 0, "records are delivered once"


def test_every_shard_is_polled_and_followed():
    inv = Recorder()
    streams = FakeStreams({"a": [[rec(1, "STOPPING")], [rec(3, "STOPPING")]], "b": [[rec(2, "STOPPING")]]})
    m = StreamMapper(streams, "arn:stream", BatchDeliverer(inv, backoff=no_wait), STOPPING_FILTER)
    m.poll_once()
    m.poll_once()
    assert sorted(sum(inv.batches, [])) == ["1", "2", "3"]


def test_partial_failure_retries_from_the_failed_record():
    inv = Recorder([{"batchItemFailures": [{"itemIdentifier": "3"}]}, {"batchItemFailures": []}])
    d = BatchDeliverer(inv, backoff=no_wait).deliver([to_lambda_record(rec(i, "STOPPING"), "s") for i in (1, 2, 3, 4)])
    assert inv.batches == [["1", "2", "3", "4"], ["3", "4"]]
    assert d.attempts == 2 and d.failed_to_destination == []


def test_lowest_of_several_failures_wins():
    inv = Recorder([{"batchItemFailures": [{"itemIdentifier": "4"}, {"itemIdentifier": "2"}]}, {}])
    BatchDeliverer(inv, backoff=no_wait).deliver([to_lambda_record(rec(i, "STOPPING"), "s") for i in (1, 2, 3, 4)])
    assert inv.batches[1] == ["2", "3", "4"]


def test_unknown_failure_identifier_retries_the_whole_batch():
    inv = Recorder([{"batchItemFailures": [{"itemIdentifier": "nope"}]}, {}])
    BatchDeliverer(inv, backoff=no_wait).deliver([to_lambda_record(rec(i, "STOPPING"), "s") for i in (1, 2)])
    assert inv.batches == [["1", "2"], ["1", "2"]]


def test_retries_are_bounded_then_records_go_to_the_failure_destination():
    inv = Recorder([InvokeError("boom")] * 10)
    sent = []
    d = BatchDeliverer(inv, max_retries=2, on_failure=lambda recs, why: sent.append((recs, why)), backoff=no_wait)
    out = d.deliver([to_lambda_record(rec(i, "STOPPING"), "s") for i in (1, 2)])
    assert len(inv.batches) == 3, "the first attempt and two retries"
    assert out.failed_to_destination == ["1", "2"]
    assert [r["dynamodb"]["SequenceNumber"] for r in sent[0][0]] == ["1", "2"]
    assert "boom" in sent[0][1]


def test_default_failure_destination_logs_the_run_key(caplog):
    inv = Recorder([{"batchItemFailures": [{"itemIdentifier": "1"}]}] * 5)
    BatchDeliverer(inv, max_retries=1, backoff=no_wait).deliver([to_lambda_record(rec(1, "STOPPING", run="r-9"), "s")])
    assert f"FAILURE DESTINATION: run {ARN}/r-9 record 1" in caplog.text


def test_a_failing_shard_moves_on_after_the_failure_path():
    page1 = [rec(1, "STOPPING")]
    page2 = [rec(2, "STOPPING")]
    inv = Recorder([InvokeError("x"), InvokeError("x"), {}])
    m = StreamMapper(FakeStreams({"s": [page1, page2]}), "arn", BatchDeliverer(inv, max_retries=1, on_failure=lambda *_: None, backoff=no_wait), STOPPING_FILTER)
    m.poll_once()
    m.poll_once()
    assert inv.batches == [["1"], ["1"], ["2"]]
    assert m.deliveries[0].failed_to_destination == ["1"]
