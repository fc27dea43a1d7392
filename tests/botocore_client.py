"""botocore's view of the API: run by tests/lambda_runtime.rs against a live
`cargo lambda watch` endpoint. botocore reads the error code from the body's
`__type` and the modeled fields from the body, so this checks what boto3 and
the AWS CLI users see. Exits non-zero (with the reason) on any mismatch.

Usage: python botocore_client.py ENDPOINT WORKFLOW_ARN STOPPED_RUN_ID
"""

import sys

import boto3
from botocore.config import Config

endpoint, arn, run_id = sys.argv[1:4]
client = boto3.client(
    "mwaa-serverless",
    endpoint_url=endpoint,
    region_name="us-east-1",
    aws_access_key_id="testing",
    aws_secret_access_key="testing",
    config=Config(retries={"max_attempts": 1}),
)


def check(cond, what):
    if not cond:
        sys.exit(f"FAIL: {what}")
    print(f"ok: {what}")


out = client.stop_workflow_run(WorkflowArn=arn, RunId=run_id)
check(out["Status"] == "STOPPING" and out["RunId"] == run_id and out["WorkflowVersion"] == "v3", f"stop answer {out}")
check(bool(out["ResponseMetadata"]["RequestId"]), "x-amzn-RequestId read as the request id")

got = client.get_workflow_run(WorkflowArn=arn, RunId=run_id)
detail = got["RunDetail"]
check(detail["RunState"] == "STOPPING", "RunState")
check(detail["StartedOn"].year == 2026 and detail["StartedOn"].tzinfo is not None, "StartedOn parsed as a datetime")

try:
    client.stop_workflow_run(WorkflowArn="arn:nope", RunId="-x")
    check(False, "bad input raises")
except client.exceptions.ValidationException as e:
    r = e.response
    check(r["Error"]["Code"] == "ValidationException", "ValidationException code")
    check(r["Reason"] == "fieldValidationFailed", "Reason member")
    check([f["Name"] for f in r["FieldList"]] == ["WorkflowArn", "RunId"], "FieldList names every bad field")

try:
    client.get_workflow_run(WorkflowArn=arn, RunId="missing")
    check(False, "missing run raises")
except client.exceptions.ResourceNotFoundException as e:
    r = e.response
    check(r["ResourceId"] == "missing" and r["ResourceType"] == "WorkflowRun", "ResourceNotFound members")
    check(e.response["ResponseMetadata"]["HTTPStatusCode"] == 400, "status 400")
