"""The Airflow provider as a client of the local stack, run by
tests/it/runtime/airflow.rs in .venv-airflow (make airflow-venv).

apache-airflow-providers-amazon's MwaaServerlessStopWorkflowRunOperator and
MwaaServerlessWorkflowRunSensor, unchanged, with aws_conn_id=None (boto3's
default credentials, the endpoint from AWS_ENDPOINT_URL_MWAA_SERVERLESS, as an
Airflow user points them at a deployed stack). They are called as the
provider's own unit tests call them (execute, poke), outside a task runner.

What they observe is printed as one JSON object on the last line of stdout;
the Rust test asserts on it. Nothing is asserted here.

argv:
  local WORKFLOW_ARN RUN_ID FINISHED_ARN FINISHED_RUN_ID
      the provider's classes against `make local`: RUN_ID is RUNNING,
      FINISHED_RUN_ID is SUCCESS
  deployed WORKFLOW_ARN RUN_ID
      clients/airflow/mwaa_stop_airflow.py's signed classes (on PYTHONPATH, as
      Airflow puts its dags folder) and the provider's unsigned operator,
      against an endpoint that checks signatures as API Gateway does
"""

from __future__ import annotations

import json
import sys
import time

from botocore.exceptions import ClientError

from airflow.providers.amazon.aws.operators.mwaa_serverless import MwaaServerlessStopWorkflowRunOperator
from airflow.providers.amazon.aws.sensors.mwaa_serverless import MwaaServerlessWorkflowRunSensor

# How long the sensor may poke before the test gives up on STOPPED.
POKE_FOR_S = 120
POKE_EVERY_S = 0.5


def stop(arn: str, run_id: str, operator=MwaaServerlessStopWorkflowRunOperator) -> dict:
    op = operator(task_id="stop_run", workflow_arn=arn, run_id=run_id, aws_conn_id=None)
    try:
        return {"returned": op.execute({})}
    except ClientError as e:
        err = e.response.get("Error", {})
        return {
            "error": type(e).__name__,
            "code": err.get("Code"),
            "message": err.get("Message"),
            "http_status": e.response.get("ResponseMetadata", {}).get("HTTPStatusCode"),
            # botocore retries what it may (throttling, 5xx): 0 attempts more
            # means the answer told it not to.
            "retry_attempts": e.response.get("ResponseMetadata", {}).get("RetryAttempts"),
        }


def sense(arn: str, run_id: str, sensor=MwaaServerlessWorkflowRunSensor, pokes_at_most: int | None = None) -> dict:
    """Poke until the sensor returns True or raises; every poke's result and
    the RunState the sensor itself read for it (its client's answers,
    recorded as they pass)."""
    sensor = sensor(task_id="wait_run", workflow_arn=arn, run_id=run_id, aws_conn_id=None)
    client = sensor.hook.conn
    states: list[str] = []
    read = client.get_workflow_run

    def recording(**kwargs):
        out = read(**kwargs)
        states.append(out["RunDetail"]["RunState"])
        return out

    client.get_workflow_run = recording
    pokes: list[dict] = []
    give_up = time.monotonic() + POKE_FOR_S
    while time.monotonic() < give_up:
        try:
            result = sensor.poke({})
        except Exception as e:  # noqa: BLE001 - the sensor's failure is what is observed
            pokes.append({"raised": type(e).__name__, "message": str(e), "state": states[-1] if states else None})
            break
        pokes.append({"returned": result, "state": states[-1]})
        if result or len(pokes) == pokes_at_most:
            break
        time.sleep(POKE_EVERY_S)
    return {"pokes": pokes}


def deployed(arn: str, run_id: str) -> dict:
    from mwaa_stop_airflow import ExecuteApiStopWorkflowRunOperator, ExecuteApiWorkflowRunSensor

    return {
        "signed_stop": stop(arn, run_id, ExecuteApiStopWorkflowRunOperator),
        "signed_sense": sense(arn, run_id, ExecuteApiWorkflowRunSensor, pokes_at_most=2),
        "unsigned_stop": stop(arn, run_id),
    }


def main() -> int:
    if sys.argv[1] == "deployed":
        print(json.dumps(deployed(*sys.argv[2:4])))
        return 0
    arn, run_id, finished_arn, finished_run_id = sys.argv[2:6]
    seen = {}
    seen["stop"] = stop(arn, run_id)
    seen["sense"] = sense(arn, run_id)
    # A client that lost the first answer and stops again: the same run's status, no error.
    seen["stop_again"] = stop(arn, run_id)
    seen["stop_finished"] = stop(finished_arn, finished_run_id)
    seen["sense_finished"] = sense(finished_arn, finished_run_id)
    print(json.dumps(seen))
    return 0


if __name__ == "__main__":
    sys.exit(main())
