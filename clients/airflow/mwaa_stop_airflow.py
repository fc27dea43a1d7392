"""Airflow tasks for a deployed mwaa-stop stack: the Amazon provider's
MWAA Serverless stop operator and run sensor, signed for API Gateway.

Copy this file into your Airflow deployment's `dags/` (or `plugins/`)
folder. It needs apache-airflow-providers-amazon 9.39.0 or newer (the first
with MwaaServerlessStopWorkflowRunOperator and MwaaServerlessWorkflowRunSensor)
and nothing else. docs/airflow.md shows a DAG that uses it.

Why subclasses: the stack's `ApiUrl` is an API Gateway HTTP API with IAM
authorization, which checks a SigV4 signature for the service `execute-api`.
The provider's boto3 `mwaa-serverless` client signs for the model's signing
name, `airflow-serverless`, and API Gateway answers 403. These classes add one
botocore `before-sign` handler to their hook's client and change nothing
else. Against `make local` (no signature checked) the provider's own classes
work unchanged.

Tested by tests/it/runtime/airflow.rs (`make airflow-test`) against the test
kit's SigV4 verifier, which checks signatures the way API Gateway does.
"""

from __future__ import annotations

from airflow.providers.amazon.aws.operators.mwaa_serverless import MwaaServerlessStopWorkflowRunOperator
from airflow.providers.amazon.aws.sensors.mwaa_serverless import MwaaServerlessWorkflowRunSensor

EXECUTE_API = "execute-api"
_HANDLER_ID = "mwaa-stop-sign-for-execute-api"


def _use_execute_api(request, **_):
    request.context.setdefault("signing", {})["signing_name"] = EXECUTE_API


def sign_for_execute_api(client):
    """Make a botocore `mwaa-serverless` client sign for `execute-api`
    (idempotent: registering it again on the same client changes nothing)."""
    client.meta.events.register("before-sign.mwaa-serverless", _use_execute_api, unique_id=_HANDLER_ID)
    return client


class ExecuteApiStopWorkflowRunOperator(MwaaServerlessStopWorkflowRunOperator):
    """MwaaServerlessStopWorkflowRunOperator, signed for API Gateway. Returns
    the run's status: STOPPING, or STOPPED for a run already stopped; a run
    that already finished (SUCCESS, FAILED, TIMEOUT) raises botocore's
    ValidationException."""

    def execute(self, context):
        sign_for_execute_api(self.hook.conn)
        return super().execute(context)


class ExecuteApiWorkflowRunSensor(MwaaServerlessWorkflowRunSensor):
    """MwaaServerlessWorkflowRunSensor, signed for API Gateway. Fails on
    STOPPED with the run's ErrorMessage, which names who requested the stop
    and when."""

    def poke(self, context):
        sign_for_execute_api(self.hook.conn)
        return super().poke(context)
