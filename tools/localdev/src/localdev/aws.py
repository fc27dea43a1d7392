"""The local AWS side of the stack: clients of the moto server, the
environment of an AWS CLI call, run ARNs, and the resources the functions
expect (the run table with its stream and the template's indexes, the
worker cluster, the task definition of a worker)."""

from __future__ import annotations

import os
import uuid

from .common import ACCOUNT, CLUSTER, REGION, TABLE, say


def aws_env(aws_url: str | None = None) -> dict:
    env = dict(os.environ)
    env.update(
        AWS_ACCESS_KEY_ID="local",
        AWS_SECRET_ACCESS_KEY="local",
        AWS_DEFAULT_REGION=REGION,
        AWS_REGION=REGION,
        AWS_PAGER="",
    )
    env.pop("AWS_PROFILE", None)
    if aws_url:
        env["AWS_ENDPOINT_URL"] = aws_url
    return env


def clients(aws_url: str):
    import boto3

    session = boto3.session.Session(aws_access_key_id="local", aws_secret_access_key="local", region_name=REGION)
    return (
        session.client("dynamodb", endpoint_url=aws_url),
        session.client("dynamodbstreams", endpoint_url=aws_url),
        session.client("ecs", endpoint_url=aws_url),
    )


def workflow_arn(name: str) -> str:
    suffix = uuid.uuid5(uuid.NAMESPACE_URL, name).hex[:10]
    return f"arn:aws:airflow-serverless:{REGION}:{ACCOUNT}:workflow/{name}-{suffix}"


def create_resources(aws_url: str, schema: dict):
    """The run table (stream on; keys and indexes as `schema`, the
    template's: `cfn_template.run_table_schema`), the worker cluster and the
    worker task definition. Returns the (DynamoDB, ECS) clients."""
    ddb, _, ecs = clients(aws_url)
    extra = {"GlobalSecondaryIndexes": schema["GlobalSecondaryIndexes"]} if schema.get("GlobalSecondaryIndexes") else {}
    ddb.create_table(
        TableName=TABLE,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=schema["AttributeDefinitions"],
        KeySchema=schema["KeySchema"],
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        **extra,
    )
    ecs.create_cluster(clusterName=CLUSTER)
    ecs.register_task_definition(
        family="airflow-worker", containerDefinitions=[{"name": "worker", "image": "airflow-worker:local", "memory": 512}]
    )
    indexes = ", ".join(g["IndexName"] for g in schema.get("GlobalSecondaryIndexes") or [])
    say(f"- created run table {TABLE} (stream on" + (f", index {indexes}" if indexes else "") + f") and ECS cluster {CLUSTER}")
    return ddb, ecs
