"""The guided tour of `make demo`: start the stack, stop a seeded run with the
real AWS CLI, watch it reach STOPPED, show the workers and the run's history,
shut down. Exits 0 when the run and every worker are STOPPED."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import time
from pathlib import Path

from .aws import aws_env, clients
from .common import BIN, CLUSTER, TABLE, StackError, say
from .events import line as event_line, wait_for as wait_for_events
from .seed import seed_run
from .supervisor import Interrupted, Stack, install_stop_signals

# DynamoDB maps carry no order (the finalizer builds them from a hash map), so the
# tour prints an event's details in this fixed order, unknown keys last, sorted.
EVENT_DETAIL_ORDER = ("By", "RequestId", "SourceIp", "Operation", "WorkersStopped", "OrphansStopped",
                      "FinalizedBy", "Policy", "Children", "Affected", "Skipped")


def event_detail_keys(event):
    keys = [k for k in event if k not in ("Event", "At")]
    rank = {k: i for i, k in enumerate(EVENT_DETAIL_ORDER)}
    return sorted(keys, key=lambda k: (rank.get(k, len(rank)), k))


def task_statuses(aws_url: str, tasks: list[str]) -> dict[str, str]:
    _, _, ecs = clients(aws_url)
    out: dict[str, str] = {}
    for i in range(0, len(tasks), 100):
        d = ecs.describe_tasks(cluster=CLUSTER, tasks=tasks[i : i + 100])
        out.update({t["taskArn"]: t["lastStatus"] for t in d["tasks"]})
        out.update({f["arn"]: "MISSING" for f in d.get("failures", [])})
    return out


def aws_cli(stack: Stack, *args: str) -> dict:
    out = subprocess.run(
        [str(BIN / "aws"), "mwaa-serverless", *args, "--endpoint-url", stack.api_url, "--output", "json"],
        env=aws_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    if out.returncode != 0:
        raise StackError(f"aws mwaa-serverless {args[0]} failed: {out.stderr.strip()}")
    return json.loads(out.stdout)


def cmd_demo(args) -> int:
    stack = Stack(args.aws_port, args.api_port, Path(args.log_dir))
    install_stop_signals(stack.cancel)
    try:
        say("== Starting the local stack")
        stack.start()
        arn, run_id, tasks = seed_run(stack.aws_url, workflow="demo-etl", workers=args.workers)
        say(f"\n== Seeded run {run_id} of {arn}: RUNNING with {len(tasks)} worker tasks")
        before = task_statuses(stack.aws_url, tasks)
        for t in tasks:
            say(f"   {t.rsplit('/', 1)[-1]}  {before[t]}")

        say("\n== Stopping it with the AWS CLI")
        say(f"   $ aws mwaa-serverless stop-workflow-run --endpoint-url {stack.api_url} --workflow-arn {arn} --run-id {run_id}")
        t0 = time.monotonic()
        out = aws_cli(stack, "stop-workflow-run", "--workflow-arn", arn, "--run-id", run_id)
        say(f"   → Status {out['Status']}")

        say("\n== Watching with get-workflow-run until STOPPED")
        state, seen = None, None
        while time.monotonic() - t0 < args.timeout:
            state = aws_cli(stack, "get-workflow-run", "--workflow-arn", arn, "--run-id", run_id)["RunDetail"]["RunState"]
            if state != seen:
                say(f"   {time.monotonic() - t0:6.2f}s  {state}")
                seen = state
            if state == "STOPPED":
                break
            time.sleep(0.2)
        elapsed = time.monotonic() - t0

        say("\n== Workers after the stop")
        after = task_statuses(stack.aws_url, tasks)
        for t in tasks:
            say(f"   {t.rsplit('/', 1)[-1]}  {before[t]} → {after[t]}")

        say("\n== The run's history")
        item = stack.ddb.get_item(TableName=TABLE, Key={"WorkflowArn": {"S": arn}, "RunId": {"S": run_id}}, ConsistentRead=True)["Item"]
        for ev in item.get("History", {}).get("L", []):
            m = ev["M"]
            extra = ", ".join(f"{k}={list(m[k].values())[0]}" for k in event_detail_keys(m))
            say(f"   {m['At']['S']}  {m['Event']['S']:<14} {extra}")

        say("\n== The stop's run events on EventBridge (moto's default bus, via the queue `make events` tails)")
        events = wait_for_events(stack.aws_url, run_id, {"STOPPING", "STOPPED"}, timeout=30)
        for e in events:
            say(f"   {event_line(e)}")
        published = {(e.get("detail") or {}).get("status") for e in events}

        ok = state == "STOPPED" and all(after[t] == "STOPPED" for t in tasks) and {"STOPPING", "STOPPED"} <= published
        at = {ev["M"]["Event"]["S"]: ev["M"]["At"]["S"] for ev in item.get("History", {}).get("L", [])}
        if "StopRequested" in at and "Stopped" in at:
            parse = lambda v: datetime.datetime.strptime(v, "%Y-%m-%dT%H:%M:%S.%fZ")  # noqa: E731
            recorded = (parse(at["Stopped"]) - parse(at["StopRequested"])).total_seconds()
            say(f"\n== Stop request to STOPPED: {recorded:.3f} s in the run's history; seen by the CLI after {elapsed:.2f} s")
        else:
            say(f"\n== Stop request to STOPPED: not reached; gave up after {elapsed:.2f} s")
        say(f"   function logs: {Path(args.log_dir) / 'functions.log'}")
        if not ok:
            say(f"FAILED: run state {state}, workers {sorted(set(after.values()))}, run events {sorted(filter(None, published))}")
            return 1
        say("OK: the run is STOPPED, every worker task is STOPPED, and its Stopping and Stopped events were published")
        return 0
    except Interrupted:
        say("\n== Interrupted")
        return 130
    except StackError as e:
        print(f"demo: {e}", file=sys.stderr)
        return 1
    finally:
        stack.stop(announce="\n== Shutting down")
