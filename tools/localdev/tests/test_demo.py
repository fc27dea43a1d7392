"""Tests of the demo tour's printing that do not need a running stack
(localdev/demo.py).
Run by `make test` (`.venv/bin/python -m pytest tools/localdev/tests`)."""

from localdev.demo import event_detail_keys


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
