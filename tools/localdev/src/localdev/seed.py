"""Runs to stop: a RUNNING run with real (moto) ECS worker tasks, optionally
with child runs and a child policy, and the AWS CLI lines that stop it."""

from __future__ import annotations

import datetime
import re
import uuid

from .aws import clients, workflow_arn
from .common import CLUSTER, TABLE, StackError

CHILD_POLICIES = ("TERMINATE", "REQUEST_CANCEL", "ABANDON")
# More than this is a typo, not an experiment: each worker is an ECS task in
# moto and an entry of the run item.
MAX_WORKERS = 5000
MAX_CHILDREN = 100


def _count(name: str, flag: str, value: str, limit: int) -> int:
    v = str(value).strip()
    if not re.fullmatch(r"[0-9]+", v):
        raise StackError(f"{name}={value!r} ({flag}) must be a whole number from 0 to {limit}.")
    n = int(v)
    if n > limit:
        raise StackError(f"{name}={value} ({flag}) is more than the limit of {limit}.")
    return n


def check_seed_args(workers: str, children: str, child_policy: str | None) -> tuple[int, int, str | None]:
    """The seed command's arguments as given (strings, from `make seed
    WORKERS=.. CHILDREN=.. CHILD_POLICY=..`), checked before anything is
    touched: (workers, children, child policy). A value that makes no sense
    is refused with one sentence (`StackError`)."""
    w = _count("WORKERS", "--workers", workers, MAX_WORKERS)
    c = _count("CHILDREN", "--children", children, MAX_CHILDREN)
    if child_policy is not None and child_policy not in CHILD_POLICIES:
        raise StackError(f"CHILD_POLICY={child_policy!r} (--child-policy) is not a child policy: use TERMINATE, REQUEST_CANCEL or ABANDON.")
    return w, c, child_policy


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def seed_run(
    aws_url: str,
    workflow: str = "demo-etl",
    run_id: str | None = None,
    workers: int = 3,
    children: int = 0,
    child_policy: str | None = None,
    child_keys_out: list | None = None,
) -> tuple[str, str, list[str]]:
    """Write a RUNNING run with `workers` real ECS tasks (and, if asked, child
    runs with one worker each, whose keys go to `child_keys_out`). Returns
    (workflow ARN, run id, task ARNs)."""
    ddb, _, ecs = clients(aws_url)
    arn = workflow_arn(workflow)
    run_id = run_id or f"run-{datetime.datetime.now(datetime.timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    started_by = f"mwaa-local/{run_id}"[:128]
    tasks: list[str] = []
    while len(tasks) < workers:
        out = ecs.run_task(
            cluster=CLUSTER, taskDefinition="airflow-worker", launchType="FARGATE", count=min(10, workers - len(tasks)), startedBy=started_by
        )
        tasks += [t["taskArn"] for t in out["tasks"]]
    now = now_iso()
    item = {
        "WorkflowArn": {"S": arn},
        "RunId": {"S": run_id},
        "Status": {"S": "RUNNING"},
        "WorkflowVersion": {"S": "1"},
        "RunType": {"S": "ON_DEMAND"},
        "CreatedAt": {"S": now},
        "StartedOn": {"S": now},
        "ModifiedAt": {"S": now},
        "Workers": {"M": {t: {"S": CLUSTER} for t in tasks}},
        "WorkerStartedBy": {"S": started_by},
        "WorkerClusters": {"SS": [CLUSTER]},
        "History": {"L": [{"M": {"Event": {"S": "Started"}, "At": {"S": now}}}]},
    }
    child_keys = []
    for i in range(children):
        c_arn, c_run, _ = seed_run(aws_url, f"{workflow}-child{i + 1}", f"{run_id}-c{i + 1}", 1)
        if child_keys_out is not None:
            child_keys_out.append((c_arn, c_run))
        child_keys.append({"M": {"WorkflowArn": {"S": c_arn}, "RunId": {"S": c_run}}})
    if child_keys:
        item["ChildRuns"] = {"L": child_keys}
        item["ChildPolicy"] = {"S": child_policy or "TERMINATE"}
    ddb.put_item(TableName=TABLE, Item=item)
    return arn, run_id, tasks


def cli_commands(api_url: str, arn: str, run_id: str) -> str:
    return "\n".join(
        [
            "  export PATH=\"$PWD/.venv/bin:$PATH\" AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_DEFAULT_REGION=us-east-1",
            f"  aws mwaa-serverless stop-workflow-run --endpoint-url {api_url} --workflow-arn {arn} --run-id {run_id}",
            f"  aws mwaa-serverless get-workflow-run --endpoint-url {api_url} --workflow-arn {arn} --run-id {run_id} --query RunDetail.RunState",
        ]
    )
