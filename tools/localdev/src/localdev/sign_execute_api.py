#!/usr/bin/env python3
"""Call the deployed API with boto3's `mwaa-serverless` client, signed for `execute-api`.

API Gateway's IAM authorization verifies a SigV4 signature whose credential
scope names the service `execute-api`. The `mwaa-serverless` client signs for
the service's own signing name, `airflow-serverless`, so API Gateway would
refuse it (403). The smallest change is one event handler that sets the
signing name just before botocore signs:

    client = boto3.client("mwaa-serverless", region_name=REGION, endpoint_url=API_URL)
    sign_for_execute_api(client)
    client.stop_workflow_run(WorkflowArn=ARN, RunId=RUN_ID)

Usage:
    python -m localdev.sign_execute_api --url API_URL --region REGION --workflow-arn ARN --run-id ID [--get]

Tested offline by `tests/it/runtime/sign_execute_api.rs` (`make sign-check`):
boto3 with this handler, and aws-sdk-rust with its interceptor, against the
test kit's SigV4 verifier (`tests/it/kit/sigv4.rs`), which checks signatures
the way API Gateway does for service `execute-api`.

Needs botocore >= 1.44.5 (the mwaa-serverless model; the project's .venv has it).
"""

from __future__ import annotations

import argparse
import json
import sys

EXECUTE_API = "execute-api"


def sign_for_execute_api(client) -> None:
    """Make a botocore client sign every request for service `execute-api`.

    botocore emits `before-sign` right before it signs; a `signing_name` in the
    request's signing context overrides the model's (airflow-serverless).
    """

    def use_execute_api(request, **_):
        request.context.setdefault("signing", {})["signing_name"] = EXECUTE_API

    client.meta.events.register(f"before-sign.{client.meta.service_model.service_id.hyphenize()}", use_execute_api)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", help="the stack's ApiUrl output")
    ap.add_argument("--region", help="the stack's region (the signature's region)")
    ap.add_argument("--workflow-arn")
    ap.add_argument("--run-id")
    ap.add_argument("--get", action="store_true", help="GetWorkflowRun instead of StopWorkflowRun")
    args = ap.parse_args(argv)
    if not (args.url and args.region and args.workflow_arn and args.run_id):
        ap.error("--url, --region, --workflow-arn and --run-id are required")
    import boto3

    client = boto3.client("mwaa-serverless", region_name=args.region, endpoint_url=args.url)
    sign_for_execute_api(client)
    if args.get:
        out = client.get_workflow_run(WorkflowArn=args.workflow_arn, RunId=args.run_id)
    else:
        out = client.stop_workflow_run(WorkflowArn=args.workflow_arn, RunId=args.run_id)
    out.pop("ResponseMetadata", None)
    print(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
