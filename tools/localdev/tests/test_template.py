"""Assertions on template.yaml that linters cannot make, as a pytest module.

    make template-assertions        (.venv-sam, part of `make template-check`)
    .venv-sam/bin/python -m pytest -q -p no:cacheprovider tools/localdev/tests/test_template.py

Also collected by `make pytest` (.venv has cfn-lint through moto[server]).
SAM_TEMPLATE=path checks another template (default: the project's
template.yaml); samconfig.toml is looked for next to it.

Each test checks one part of the template:
  - IAM least privilege: each function role grants exactly the statements in
    ALLOWED below (actions, resources, conditions), nothing else: no wildcard
    actions, no managed policies, no SAM policy templates, no other policy
    resources. A later edit that widens a grant fails here, and
    test_each_widening_mutation_is_caught proves that on mutated copies of
    the template (each must fail at least one of CHECKS);
  - the stream event source mapping (filter, partial batch failures, bisect,
    finite retries and record age, parallelization, encrypted failure queue);
  - the safety net: the reconciler's exact grants (Query on the StoppingRuns
    index only; no Scan, no stream, no SQS), the sparse GSI, the schedule,
    its deadlines, METRICS_STACK on every function, StrandedStopAlarm and the
    dashboard naming every metric of the service;
  - the `sam local` switches (LocalEndpointUrl, LocalUnauthenticated): with
    the deployed defaults every function lacks AWS_ENDPOINT_URL and
    ALLOW_UNAUTHENTICATED_LOCAL; the latter needs both parameters set and
    appears nowhere else; the endpoint accepts loopback addresses only;
  - alarms page someone by default: without AlarmTopicArn the stack creates
    its topic (encrypted with a key CloudWatch alarms may use, not
    alias/aws/sns) and only then, AlarmEmail subscribes to it and only then,
    and every alarm notifies the chosen topic, for each combination of the
    two parameters (resolved as CloudFormation would); the alarms on
    ReconcilerUnreadableEntries, StoppedWithUnconfirmedWorkers and
    LateWorkersFound;
  - the stop deadline: StopDeadlineSeconds (>= Fargate's 120 s stopTimeout
    plus deprovisioning) as STOP_DEADLINE_SECONDS of both paced functions;
  - the ECS rate budget: reserved concurrency on the finalizer and the
    reconciler, and their processes' paced StopTask rates (less the RunTask
    reserve), read rates and read bursts within ECS's account buckets
    (docs/deploy.md, "ECS rate budget");
  - every function has active tracing, JSON logs into a log group with
    retention, the run table's settings, the API's IAM route, alarms, outputs,
    samconfig.toml.

The template is read by localdev.cfn_template (cfn-lint's decoder), which
keeps !Ref / !GetAtt / !Sub as {"Ref": ...} / {"Fn::GetAtt": [...]} /
{"Fn::Sub": ...}. The built binaries are checked by localdev.check_bootstrap.
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path
from typing import Any, Callable

import pytest

from localdev import cfn_template

LOCAL_AUTH_VAR = "ALLOW_UNAUTHENTICATED_LOCAL"
LOCAL_ENDPOINT_VAR = "AWS_ENDPOINT_URL"
# The `sam local` switches: each variable is present only under its condition.
LOCAL_SWITCH_ENV = {
    LOCAL_ENDPOINT_VAR: {"Fn::If": ["UseLocalEndpoint", {"Ref": "LocalEndpointUrl"}, {"Ref": "AWS::NoValue"}]},
    LOCAL_AUTH_VAR: {"Fn::If": ["AllowLocalUnauthenticated", "true", {"Ref": "AWS::NoValue"}]},
}
LOCAL_CONDITIONS = {
    "UseLocalEndpoint": {"Fn::Not": [{"Fn::Equals": [{"Ref": "LocalEndpointUrl"}, ""]}]},
    "AllowLocalUnauthenticated": {"Fn::And": [{"Condition": "UseLocalEndpoint"},
                                              {"Fn::Equals": [{"Ref": "LocalUnauthenticated"}, "true"]}]},
}
LOCAL_PARAMETERS = {
    "LocalEndpointUrl": {"Type": "String", "Default": "",
                         "AllowedPattern": r"^$|^http://(127\.0\.0\.1|localhost|host\.docker\.internal):[0-9]{1,5}$"},
    "LocalUnauthenticated": {"Type": "String", "Default": "false", "AllowedValues": ["false", "true"]},
}

# The functions, their binaries and their roles.
FUNCTIONS = {
    "RunApiFunction": {"binary": "run-api", "role": "RunApiRole", "log_group": "RunApiLogGroup"},
    "StopFinalizerFunction": {"binary": "stop-finalizer", "role": "StopFinalizerRole", "log_group": "StopFinalizerLogGroup"},
    "StopReconcilerFunction": {"binary": "stop-reconciler", "role": "ReconcilerRole", "log_group": "StopReconcilerLogGroup"},
    "RunEventsFunction": {"binary": "run-events", "role": "RunEventsRole", "log_group": "RunEventsLogGroup"},
}
RUN_EVENTS = "RunEventsFunction"
RECONCILER = "StopReconcilerFunction"

# The sparse index of STOPPING runs (the contract with src/aws/dynamo.rs):
# only STOPPING runs carry its keys.
STOPPING_INDEX = "StoppingRuns"
STOPPING_INDEX_KEYS = {"StoppingShard": "HASH", "StoppingSince": "RANGE"}
STOPPING_INDEX_ARN = {"Fn::Sub": "${RunsTable.Arn}/index/" + STOPPING_INDEX}

# The service's own metrics (embedded metric format in the functions' logs),
# the contract with src/metrics.rs, the alarm and the dashboard.
METRICS_NAMESPACE = "MwaaServerlessStop"
METRICS = ("StopsAccepted", "StopsNoOp", "StopsRefused", "WorkersStopped", "OrphansStopped", "StopToStoppedSeconds",
           "FinalizerPendingRetries", "ReconcilerFinds", "OldestStoppingAgeSeconds", "ReconcilerUnreadableEntries",
           "StoppedWithUnconfirmedWorkers", "LateWorkersFound", "RunEventsPublished", "RunEventsFailed", "RunEventsSkipped",
           "DirectStopTaskFallbacks")
# Metrics emitted only when something that should never happen does; each has
# an alarm (Sum > 0 over at most the period here, missing data not breaching).
EVENT_ALARMS = {"ReconcilerUnreadableEntries": 300, "StoppedWithUnconfirmedWorkers": 60, "LateWorkersFound": 60}

# ECS's published buckets per account and Region (src/pacing/mod.rs) and what
# src/config.rs reads when a variable is absent.
ECS_ACCOUNT_STOP_RATE = 40
ECS_ACCOUNT_READ_RATE = 20
ECS_ACCOUNT_READ_BURST = 100
ECS_ENV_DEFAULTS = {"ECS_STOP_RATE": 40, "ECS_READ_RATE": 20, "ECS_READ_BURST": 100, "ECS_RUNTASK_RESERVE_PERCENT": 10}
# The functions that wait for ECS tokens (EcsRates::for_finalizer); the API
# only spends the burst, once per stop, and is not part of the refill budget.
PACED_FUNCTIONS = ("StopFinalizerFunction", "StopReconcilerFunction")
# Fargate's maximum stopTimeout (SIGTERM to SIGKILL), plus deprovisioning.
FARGATE_MAX_STOP_TIMEOUT_S = 120
DEPROVISIONING_S = 60


def getatt(resource: str, attribute: str) -> dict:
    return {"Fn::GetAtt": [resource, attribute]}


def sub(text: str) -> dict:
    return {"Fn::Sub": text}


TASKS_IN_ACCOUNT = sub("arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:task/*")
IN_WORKER_CLUSTERS = {"ArnEquals": {"ecs:cluster": {"Ref": "WorkerClusterArns"}}}
XRAY = ({"xray:PutTraceSegments", "xray:PutTelemetryRecords"}, "*", None)

# Everything a function role may grant: (actions, resource, condition). A
# statement passes when its actions are a subset of one entry's, with exactly
# that entry's resource and condition. X-Ray's two write actions support no
# resource-level permissions, hence "*"; ecs:ListTasks is authorized on
# container instances (Fargate tasks have none), so it is scoped by the
# ecs:cluster condition alone.
ALLOWED: dict[str, list[tuple[set[str], Any, Any]]] = {
    "RunApiRole": [
        ({"dynamodb:UpdateItem", "dynamodb:GetItem"}, getatt("RunsTable", "Arn"), None),
        ({"ecs:StopTask"}, TASKS_IN_ACCOUNT, IN_WORKER_CLUSTERS),
        ({"logs:CreateLogStream", "logs:PutLogEvents"}, getatt("RunApiLogGroup", "Arn"), None),
        XRAY,
    ],
    "StopFinalizerRole": [
        ({"dynamodb:UpdateItem", "dynamodb:GetItem"}, getatt("RunsTable", "Arn"), None),
        (
            {"dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"},
            getatt("RunsTable", "StreamArn"),
            None,
        ),
        ({"dynamodb:ListStreams"}, sub("${RunsTable.Arn}/stream/*"), None),
        ({"ecs:DescribeTasks", "ecs:StopTask"}, TASKS_IN_ACCOUNT, IN_WORKER_CLUSTERS),
        ({"ecs:ListTasks"}, "*", IN_WORKER_CLUSTERS),
        ({"sqs:SendMessage"}, getatt("FinalizerFailureQueue", "Arn"), None),
        ({"logs:CreateLogStream", "logs:PutLogEvents"}, getatt("StopFinalizerLogGroup", "Arn"), None),
        XRAY,
    ],
    # The stream and its own failure queue; PutEvents on the one bus only.
    "RunEventsRole": [
        (
            {"dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"},
            getatt("RunsTable", "StreamArn"),
            None,
        ),
        ({"dynamodb:ListStreams"}, sub("${RunsTable.Arn}/stream/*"), None),
        ({"events:PutEvents"}, sub("arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/${EventBusName}"),
         None),
        ({"sqs:SendMessage"}, getatt("RunEventsFailureQueue", "Arn"), None),
        ({"logs:CreateLogStream", "logs:PutLogEvents"}, getatt("RunEventsLogGroup", "Arn"), None),
        XRAY,
    ],
    # The finalizer's table and ECS grants, without its stream and queue
    # grants, plus Query on the sparse index alone.
    "ReconcilerRole": [
        ({"dynamodb:UpdateItem", "dynamodb:GetItem"}, getatt("RunsTable", "Arn"), None),
        ({"dynamodb:Query"}, STOPPING_INDEX_ARN, None),
        ({"ecs:DescribeTasks", "ecs:StopTask"}, TASKS_IN_ACCOUNT, IN_WORKER_CLUSTERS),
        ({"ecs:ListTasks"}, "*", IN_WORKER_CLUSTERS),
        ({"logs:CreateLogStream", "logs:PutLogEvents"}, getatt("StopReconcilerLogGroup", "Arn"), None),
        XRAY,
    ],
}

# The policy set's parameter (docs/authorization.md): with AuthzPolicyParameter
# given, run-api may read that one parameter (GetParameter, no other action, no
# wildcard); with the default (empty), no SSM grant at all.
POLICY_PARAMETER = "AuthzPolicyParameter"
POLICY_PARAMETER_ARN = sub("arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter${AuthzPolicyParameter}")
ALLOWED_WITH_POLICY_PARAMETER: dict[str, list[tuple[set[str], Any, Any]]] = {
    "RunApiRole": [({"ssm:GetParameter"}, POLICY_PARAMETER_ARN, None)],
}
POLICY_ENV = {
    "AUTHZ_POLICY_PARAMETER": {"Fn::If": ["UseAuthzPolicyParameter", {"Ref": POLICY_PARAMETER}, {"Ref": "AWS::NoValue"}]},
    "AUTHZ_REFRESH_SECONDS": {"Ref": "AuthzRefreshSeconds"},
}

# The reconciler's statements, exactly (Sid -> actions, resource, condition).
RECONCILER_STATEMENTS = {
    "RunTable": (["dynamodb:UpdateItem", "dynamodb:GetItem"], getatt("RunsTable", "Arn"), None),
    "StoppingRunsIndex": (["dynamodb:Query"], STOPPING_INDEX_ARN, None),
    "WorkerTasks": (["ecs:DescribeTasks", "ecs:StopTask"], TASKS_IN_ACCOUNT, IN_WORKER_CLUSTERS),
    "ListWorkerTasks": (["ecs:ListTasks"], "*", IN_WORKER_CLUSTERS),
    "Logs": (["logs:CreateLogStream", "logs:PutLogEvents"], getatt("StopReconcilerLogGroup", "Arn"), None),
    "XRay": (["xray:PutTraceSegments", "xray:PutTelemetryRecords"], "*", None),
}

# Resources that grant permissions to principals other than the function roles
# are allowed only in these forms.
POLICY_TYPES = {"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::RolePolicy", "AWS::IAM::UserPolicy",
                "AWS::IAM::GroupPolicy", "AWS::IAM::User", "AWS::IAM::Group", "AWS::IAM::AccessKey",
                "AWS::IAM::InstanceProfile", "AWS::Serverless::Application"}

_FINALIZER_ENV = {"RUNS_TABLE", "METRICS_STACK", "FINALIZER_WAIT_MS", "FINALIZER_POLL_MS", "FINALIZER_POLL_MAX_MS",
                  "FINALIZER_RUN_CONCURRENCY", "STOP_CONCURRENCY", "DEADLINE_MARGIN_MS", "SDK_MAX_ATTEMPTS",
                  "SDK_CONNECT_TIMEOUT_MS", "SDK_ATTEMPT_TIMEOUT_MS", "SDK_OPERATION_TIMEOUT_MS",
                  "STOP_DEADLINE_SECONDS", "SWEEP_SETTLE_SECONDS", "MISSING_CONFIRM_SECONDS", "POST_STOP_SWEEP_SECONDS",
                  *ECS_ENV_DEFAULTS}
ENV_ALLOWED = {
    "RunApiFunction": {"RUNS_TABLE", "METRICS_STACK", "STOP_CONCURRENCY", "STOP_BUDGET_MS", "DEADLINE_MARGIN_MS",
                       "SDK_MAX_ATTEMPTS", "SDK_CONNECT_TIMEOUT_MS", "SDK_ATTEMPT_TIMEOUT_MS", "SDK_OPERATION_TIMEOUT_MS",
                       LOCAL_ENDPOINT_VAR, LOCAL_AUTH_VAR, *POLICY_ENV},
    "StopFinalizerFunction": _FINALIZER_ENV | {LOCAL_ENDPOINT_VAR},
    RECONCILER: _FINALIZER_ENV | {"STOPPING_INDEX", "RECONCILE_AFTER_MS", LOCAL_ENDPOINT_VAR},
    RUN_EVENTS: {"METRICS_STACK", "EVENT_BUS_NAME", "EVENT_SOURCE", "SDK_MAX_ATTEMPTS", "SDK_CONNECT_TIMEOUT_MS",
                 "SDK_ATTEMPT_TIMEOUT_MS", "SDK_OPERATION_TIMEOUT_MS", LOCAL_ENDPOINT_VAR},
}
# The variables whose value is not a literal whole number, and what it must be.
ENV_EXPRESSIONS = {
    "RUNS_TABLE": {"Ref": "RunsTable"},
    "METRICS_STACK": {"Ref": "AWS::StackName"},
    "STOPPING_INDEX": STOPPING_INDEX,
    # Whole seconds -> milliseconds by appending three zeros.
    "RECONCILE_AFTER_MS": {"Fn::Sub": "${ReconcileAfterSeconds}000"},
    "STOP_DEADLINE_SECONDS": {"Ref": "StopDeadlineSeconds"},
    "EVENT_BUS_NAME": {"Ref": "EventBusName"},
    "EVENT_SOURCE": {"Ref": "EventSource"},
    **LOCAL_SWITCH_ENV,
    **POLICY_ENV,
}
# The finalizer's settings the reconciler shares (same values); its own
# FINALIZER_WAIT_MS is shorter, so that one pass fits in a tick.
SHARED_WITH_FINALIZER = ("FINALIZER_POLL_MS", "FINALIZER_POLL_MAX_MS", "FINALIZER_RUN_CONCURRENCY", "STOP_CONCURRENCY",
                         "DEADLINE_MARGIN_MS", "SDK_MAX_ATTEMPTS", "SDK_CONNECT_TIMEOUT_MS", "SDK_ATTEMPT_TIMEOUT_MS",
                         "SDK_OPERATION_TIMEOUT_MS", "SWEEP_SETTLE_SECONDS", "MISSING_CONFIRM_SECONDS",
                         "POST_STOP_SWEEP_SECONDS")

# The filter the template must declare. The local mapping reads it from the
# template (localdev.stream_mapper), so it is written out only here.
STOPPING_FILTER = {"dynamodb": {"NewImage": {"Status": {"S": ["STOPPING"]}}}}


class CheckFailed(Exception):
    pass


def canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def require(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def resources(t: dict, rtype: str | None = None) -> dict:
    return {k: v for k, v in t.get("Resources", {}).items() if rtype is None or v.get("Type") == rtype}


def props(t: dict, name: str) -> dict:
    return t["Resources"][name].get("Properties", {}) or {}


def effective(t: dict, fn: str, key: str) -> Any:
    """A function property with SAM's Globals applied (function value wins)."""
    own = props(t, fn)
    if key in own:
        return own[key]
    return t.get("Globals", {}).get("Function", {}).get(key)


def effective_env(t: dict, fn: str) -> dict:
    glob = (t.get("Globals", {}).get("Function", {}).get("Environment") or {}).get("Variables") or {}
    own = (props(t, fn).get("Environment") or {}).get("Variables") or {}
    return {**glob, **own}


def effective_logging(t: dict, fn: str) -> dict:
    glob = t.get("Globals", {}).get("Function", {}).get("LoggingConfig") or {}
    own = props(t, fn).get("LoggingConfig") or {}
    return {**glob, **own}


def param_default(t: dict, value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in t.get("Parameters", {}):
        return t["Parameters"][value["Ref"]].get("Default")
    return value


def param_bounds(t: dict, value: Any) -> tuple[float, float]:
    """(min, max) a property can take: a literal, or a Number parameter's bounds."""
    if isinstance(value, dict) and set(value) == {"Ref"}:
        p = t.get("Parameters", {}).get(value["Ref"])
        require(p is not None, f"{value} is not a parameter")
        if "AllowedValues" in p:
            vals = [float(v) for v in p["AllowedValues"]]
            return min(vals), max(vals)
        require("MinValue" in p and "MaxValue" in p, f"parameter {value['Ref']} needs MinValue and MaxValue")
        return float(p["MinValue"]), float(p["MaxValue"])
    return float(value), float(value)


# ------------------------------------------------------------------- fixtures


def template_path() -> Path:
    return Path(os.environ.get("SAM_TEMPLATE") or cfn_template.TEMPLATE)


@pytest.fixture(scope="module")
def parsed() -> dict:
    return cfn_template.load(template_path())


@pytest.fixture
def t(parsed: dict) -> dict:
    """The template, parsed: a fresh copy for each test."""
    return copy.deepcopy(parsed)


@pytest.fixture
def samconfig() -> Path:
    return template_path().resolve().parent / "samconfig.toml"


# ------------------------------------------------------------------ IAM checks


def role_statements(t: dict, role: str, params: dict[str, str] | None = None) -> list[dict]:
    """The role's statements as deployed with `params` (the others at their
    defaults): a statement under Fn::If is there only when its condition holds."""
    out = []
    for policy in props(t, role).get("Policies", []) or []:
        doc = policy.get("PolicyDocument", {})
        for st in as_list(doc.get("Statement", [])):
            if isinstance(st, dict) and set(st) == {"Fn::If"}:
                cond, then, other = st["Fn::If"]
                st = then if resolve(t, {"Condition": cond}, params) is True else other
            if st != {"Ref": "AWS::NoValue"}:
                out.append(st)
    return out


def check_role(t: dict, role: str, params: dict[str, str] | None = None) -> None:
    require(role in t.get("Resources", {}), f"role {role} missing")
    p = props(t, role)
    require(t["Resources"][role]["Type"] == "AWS::IAM::Role", f"{role} is not an AWS::IAM::Role")
    require(not p.get("ManagedPolicyArns"), f"{role}: managed policies are not allowed: {p.get('ManagedPolicyArns')}")
    require("PermissionsBoundary" not in p or p["PermissionsBoundary"], f"{role}: empty permissions boundary")
    trust = as_list(p.get("AssumeRolePolicyDocument", {}).get("Statement", []))
    require(len(trust) == 1, f"{role}: exactly one trust statement expected")
    require(trust[0].get("Principal") == {"Service": "lambda.amazonaws.com"}, f"{role}: trusted by {trust[0].get('Principal')}")
    require(trust[0].get("Action") == "sts:AssumeRole" and trust[0].get("Effect") == "Allow", f"{role}: bad trust statement")

    allowed = ALLOWED[role] + (ALLOWED_WITH_POLICY_PARAMETER.get(role, []) if (params or {}).get(POLICY_PARAMETER) else [])
    covered: list[set[str]] = [set() for _ in allowed]
    for st in role_statements(t, role, params):
        sid = st.get("Sid", "?")
        require(st.get("Effect") == "Allow", f"{role}/{sid}: only Allow statements are expected")
        for forbidden in ("NotAction", "NotResource", "NotPrincipal", "Principal"):
            require(forbidden not in st, f"{role}/{sid}: {forbidden} is not allowed")
        actions = as_list(st.get("Action", []))
        require(actions and all(isinstance(a, str) for a in actions), f"{role}/{sid}: actions must be literal strings")
        require(not any("*" in a or "?" in a for a in actions), f"{role}/{sid}: wildcard action in {actions}")
        stmt_resources = as_list(st.get("Resource"))
        cond = st.get("Condition")
        for resource in stmt_resources:
            match = [
                i for i, (acts, res, c) in enumerate(allowed)
                if set(actions) <= acts and canon(res) == canon(resource) and canon(c) == canon(cond)
            ]
            require(match, f"{role}/{sid}: {sorted(actions)} on {canon(resource)} with condition {canon(cond)} "
                           f"is not in the allowed list")
            covered[match[0]] |= set(actions)
    missing = [sorted(acts - got) for (acts, _, _), got in zip(allowed, covered) if acts - got]
    require(not missing, f"{role}: the function needs these grants, missing: {missing}")


def test_iam_each_role_grants_exactly_the_allowed_statements(t: dict) -> None:
    """IAM least privilege: each function role grants exactly the statements in
    ALLOWED (actions, resources, conditions) and nothing else: no wildcard
    actions, no managed policies, no SAM policy templates, no other
    policy-bearing resources; and every grant a function needs is there."""
    roles = resources(t, "AWS::IAM::Role")
    require(set(roles) == set(ALLOWED), f"roles in the template: {sorted(roles)}, expected {sorted(ALLOWED)}")
    others = {k: v["Type"] for k, v in resources(t).items() if v.get("Type") in POLICY_TYPES}
    require(not others, f"policy-bearing resources outside the function roles: {others}")
    for fn, spec in FUNCTIONS.items():
        p = props(t, fn)
        require(p.get("Role") == getatt(spec["role"], "Arn"), f"{fn}: Role must be !GetAtt {spec['role']}.Arn")
        for key in ("Policies", "PermissionsBoundary", "RolePath"):
            require(key not in p, f"{fn}: {key} is not allowed (SAM would widen or generate a role)")
    require("Policies" not in t.get("Globals", {}).get("Function", {}), "Globals: Policies is not allowed")
    for role in ALLOWED:
        check_role(t, role)
        check_role(t, role, {POLICY_PARAMETER: "/mwaa-stop/policies"})


def test_authz_policy_parameter(t: dict) -> None:
    """The policy set's location (docs/authorization.md): AuthzPolicyParameter
    defaults to empty (the shipped default policy: no variable, no SSM grant)
    and accepts only hierarchical SSM parameter names (no wildcard, no ARN, no
    path that IAM would read as a pattern); given, run-api gets
    AUTHZ_POLICY_PARAMETER and GetParameter on that one parameter's ARN (the
    least-privilege read, checked by the IAM test for both cases);
    AuthzRefreshSeconds is a Number within what src/config.rs accepts
    (1..86400) and defaults to 60."""
    params = t.get("Parameters", {})
    p = params.get(POLICY_PARAMETER)
    require(p is not None and p.get("Type") == "String" and p.get("Default") == "", f"{POLICY_PARAMETER}: String, default empty")
    pattern = re.compile(p["AllowedPattern"])
    for good in ("", "/mwaa-stop/policies", "/a", "/team.a/b_c-d"):
        require(pattern.fullmatch(good) is not None, f"{POLICY_PARAMETER} must accept {good!r}")
    for bad in ("*", "/mwaa-stop/*", "/a/?", "mwaa-stop", "/a//b", "/", "arn:aws:ssm:us-east-1:123456789012:parameter/p",
                "/a b", "/a/${AWS::AccountId}"):
        require(pattern.fullmatch(bad) is None, f"{POLICY_PARAMETER} accepts {bad!r}")
    require(t["Conditions"].get("UseAuthzPolicyParameter") == {"Fn::Not": [{"Fn::Equals": [{"Ref": POLICY_PARAMETER}, ""]}]},
            "UseAuthzPolicyParameter: the parameter is not empty")
    env = (props(t, "RunApiFunction").get("Environment") or {}).get("Variables") or {}
    for var, expected in POLICY_ENV.items():
        require(canon(env.get(var)) == canon(expected), f"RunApiFunction: {var} must be {canon(expected)}")
    require("AUTHZ_POLICY_PARAMETER" not in resolve(t, env), "with the defaults, no policy parameter is configured")
    given = resolve(t, env, {POLICY_PARAMETER: "/mwaa-stop/policies"})
    require(given.get("AUTHZ_POLICY_PARAMETER") == "/mwaa-stop/policies", "the parameter's name reaches run-api")
    ssm = [st for st in role_statements(t, "RunApiRole") if any(str(a).startswith("ssm:") for a in as_list(st.get("Action")))]
    require(not ssm, f"RunApiRole: an SSM grant with the defaults: {ssm}")
    ssm = [st for st in role_statements(t, "RunApiRole", {POLICY_PARAMETER: "/p"})
           if any(str(a).startswith("ssm:") for a in as_list(st.get("Action")))]
    require(len(ssm) == 1 and as_list(ssm[0]["Action"]) == ["ssm:GetParameter"]
            and canon(ssm[0]["Resource"]) == canon(POLICY_PARAMETER_ARN) and "Condition" not in ssm[0],
            f"RunApiRole: exactly GetParameter on the one parameter, got {ssm}")
    for fn in FUNCTIONS:
        if fn != "RunApiFunction":
            for st in role_statements(t, FUNCTIONS[fn]["role"], {POLICY_PARAMETER: "/p"}):
                require(not any(str(a).startswith("ssm:") for a in as_list(st.get("Action"))), f"{fn}: no SSM grant")
    lo, hi = param_bounds(t, {"Ref": "AuthzRefreshSeconds"})
    require(params["AuthzRefreshSeconds"].get("Type") == "Number" and 1 <= lo and hi <= 86_400,
            f"AuthzRefreshSeconds: a Number within 1..86400, is {lo}..{hi}")
    require(param_default(t, {"Ref": "AuthzRefreshSeconds"}) == 60, "AuthzRefreshSeconds defaults to 60")


# --------------------------------------------------------------- other checks


def resolve_with_defaults(t: dict, node: Any) -> Any:
    """`node` as CloudFormation would deploy it with every parameter at its
    default (see resolve)."""
    return resolve(t, node)


def resolve(t: dict, node: Any, params: dict[str, str] | None = None) -> Any:
    """`node` as CloudFormation would deploy it with `params` given and every
    other parameter at its default: Ref of a parameter, Fn::If/And/Or/Not/Equals
    and Condition are evaluated; a value that resolves to AWS::NoValue is
    dropped from its map or list."""
    conditions = t.get("Conditions", {})
    values = {name: str(p.get("Default", "")) for name, p in t.get("Parameters", {}).items()}
    values.update(params or {})

    def cond(name: str) -> bool:
        return bool(ev(conditions[name]))

    def ev(n: Any) -> Any:
        if isinstance(n, dict) and len(n) == 1:
            (k, v), = n.items()
            if k == "Ref" and v in values:
                return values[v]
            if k == "Condition":
                return cond(v)
            if k == "Fn::If":
                return ev(v[1] if cond(v[0]) else v[2])
            if k == "Fn::Equals":
                return ev(v[0]) == ev(v[1])
            if k == "Fn::Not":
                return not ev(v[0])
            if k == "Fn::And":
                return all(ev(x) for x in v)
            if k == "Fn::Or":
                return any(ev(x) for x in v)
        if isinstance(n, dict):
            out = {k: ev(v) for k, v in n.items()}
            return {k: v for k, v in out.items() if v != {"Ref": "AWS::NoValue"}}
        if isinstance(n, list):
            return [x for x in (ev(x) for x in n) if x != {"Ref": "AWS::NoValue"}]
        return n

    return ev(node)


def deployed(t: dict, params: dict[str, str] | None = None, rtype: str | None = None) -> dict:
    """The resources CloudFormation would create with `params` (the others at
    their defaults): those without a Condition or whose Condition holds."""
    return {k: v for k, v in resources(t, rtype).items()
            if "Condition" not in v or resolve(t, {"Condition": v["Condition"]}, params) is True}


def test_local_switches_are_off_by_default(t: dict) -> None:
    """The `sam local` switches cannot be on in a stack deployed with the
    defaults: LocalEndpointUrl (default empty, loopback addresses only) and
    LocalUnauthenticated (default false, and only with a local endpoint) are
    exactly as written in LOCAL_PARAMETERS / LOCAL_CONDITIONS; each variable
    is set only through its condition; resolved with the defaults, no
    function has AWS_ENDPOINT_URL or ALLOW_UNAUTHENTICATED_LOCAL; and
    ALLOW_UNAUTHENTICATED_LOCAL appears nowhere else (no other function, no
    Globals, no other value)."""
    params = t.get("Parameters", {})
    for name, expected in LOCAL_PARAMETERS.items():
        got = {k: params.get(name, {}).get(k) for k in expected}
        require(canon(got) == canon(expected), f"parameter {name} must be {canon(expected)}, is {canon(got)}")
    for name, expected in LOCAL_CONDITIONS.items():
        got = t.get("Conditions", {}).get(name)
        require(canon(got) == canon(expected), f"condition {name} must be {canon(expected)}, is {canon(got)}")
    pattern = re.compile(params["LocalEndpointUrl"]["AllowedPattern"])
    for url in ("http://10.0.0.1:5000", "https://dynamodb.us-east-1.amazonaws.com", "http://127.0.0.1.example.com:80"):
        require(not pattern.match(url), f"LocalEndpointUrl accepts {url}")
    require(pattern.match("http://127.0.0.1:5000") is not None, "LocalEndpointUrl must accept http://127.0.0.1:5000")
    glob_env = (t.get("Globals", {}).get("Function", {}).get("Environment") or {}).get("Variables") or {}
    for var in LOCAL_SWITCH_ENV:
        require(var not in glob_env, f"{var} must not be in Globals")
    for fn in FUNCTIONS:
        env = (props(t, fn).get("Environment") or {}).get("Variables") or {}
        for var, expected in LOCAL_SWITCH_ENV.items():
            if var in env:
                require(canon(env[var]) == canon(expected), f"{fn}: {var} must be {canon(expected)}, is {canon(env[var])}")
        deployed = resolve_with_defaults(t, env)
        for var in LOCAL_SWITCH_ENV:
            require(var not in deployed, f"{fn}: {var} is set with the default parameters ({deployed.get(var)!r})")
    hits = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if LOCAL_AUTH_VAR in str(k):
                    hits.append(f"{path}/{k}")
                walk(v, f"{path}/{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")
        elif isinstance(node, str) and LOCAL_AUTH_VAR in node:
            hits.append(path)

    walk(t, "")
    allowed = f"/Resources/RunApiFunction/Properties/Environment/Variables/{LOCAL_AUTH_VAR}"
    require(all(h == allowed for h in hits), f"{LOCAL_AUTH_VAR} appears at {[h for h in hits if h != allowed]}")


def test_transform_and_globals(t: dict) -> None:
    """Transform and Globals: provided.al2023, arm64, bootstrap, Tracing Active,
    JSON logs, a memory size and a timeout within Lambda's bounds."""
    require(t.get("Transform") == "AWS::Serverless-2016-10-31", f"Transform is {t.get('Transform')}")
    g = t.get("Globals", {}).get("Function", {})
    require(g.get("Runtime") == "provided.al2023", f"Globals Runtime {g.get('Runtime')}")
    require(g.get("Architectures") == ["arm64"], f"Globals Architectures {g.get('Architectures')}")
    require(g.get("Handler") == "bootstrap", f"Globals Handler {g.get('Handler')}")
    require(g.get("Tracing") == "Active", f"Globals Tracing {g.get('Tracing')}")
    require((g.get("LoggingConfig") or {}).get("LogFormat") == "JSON", "Globals LoggingConfig.LogFormat must be JSON")
    require(isinstance(g.get("MemorySize"), int) and 128 <= g["MemorySize"] <= 3008, "Globals MemorySize 128..3008")
    require(isinstance(g.get("Timeout"), int) and 1 <= g["Timeout"] <= 900, "Globals Timeout 1..900")


def test_functions_are_the_rust_cargolambda_builds(t: dict) -> None:
    """Functions: exactly run-api, stop-finalizer and stop-reconciler, each a
    rust-cargolambda build of its binary for arm64 on provided.al2023; no plain
    Lambda functions."""
    fns = resources(t, "AWS::Serverless::Function")
    require(set(fns) == set(FUNCTIONS), f"functions {sorted(fns)}, expected {sorted(FUNCTIONS)}")
    require(not resources(t, "AWS::Lambda::Function"), "plain AWS::Lambda::Function resources are not expected")
    for fn, spec in FUNCTIONS.items():
        meta = t["Resources"][fn].get("Metadata", {})
        require(meta.get("BuildMethod") == "rust-cargolambda", f"{fn}: BuildMethod {meta.get('BuildMethod')}")
        require((meta.get("BuildProperties") or {}).get("Binary") == spec["binary"], f"{fn}: Binary must be {spec['binary']}")
        require(effective(t, fn, "Architectures") == ["arm64"], f"{fn}: arm64 expected")
        require(effective(t, fn, "Runtime") == "provided.al2023", f"{fn}: provided.al2023 expected")


def test_every_function_traces_and_logs_json_to_a_group_with_retention(t: dict) -> None:
    """Every function: Tracing Active, JSON logs into its own log group, which
    has a retention."""
    for fn, spec in FUNCTIONS.items():
        require(effective(t, fn, "Tracing") == "Active", f"{fn}: Tracing is {effective(t, fn, 'Tracing')}")
        logging = effective_logging(t, fn)
        require(logging.get("LogFormat") == "JSON", f"{fn}: LogFormat {logging.get('LogFormat')}")
        require(logging.get("LogGroup") == {"Ref": spec["log_group"]}, f"{fn}: LoggingConfig.LogGroup must be !Ref {spec['log_group']}")
        group = t["Resources"].get(spec["log_group"], {})
        require(group.get("Type") == "AWS::Logs::LogGroup", f"{spec['log_group']} is not a log group")
        require(group.get("Properties", {}).get("RetentionInDays") is not None, f"{spec['log_group']}: no retention")


def test_environment_is_known_and_deadlines_fit_the_timeouts(t: dict) -> None:
    """Environment: only known variables, whole numbers, RUNS_TABLE from the
    table, METRICS_STACK the stack name; the API's stop budget, the
    finalizer's and the reconciler's wait fit their function timeouts, the
    API's timeout fits API Gateway's 30 s and one reconciler pass fits in its
    one-minute tick."""
    require(set(ENV_ALLOWED) == set(FUNCTIONS), "ENV_ALLOWED must name every function")
    for fn, allowed in ENV_ALLOWED.items():
        env = effective_env(t, fn)
        if fn != RUN_EVENTS:  # the only function that never touches the table
            require(env.get("RUNS_TABLE") == {"Ref": "RunsTable"}, f"{fn}: RUNS_TABLE must be !Ref RunsTable")
        extra = set(env) - allowed
        require(not extra, f"{fn}: unexpected environment {sorted(extra)}")
        for k, v in env.items():
            if k in ENV_EXPRESSIONS:
                require(canon(v) == canon(ENV_EXPRESSIONS[k]), f"{fn}: {k} must be {canon(ENV_EXPRESSIONS[k])}, is {canon(v)}")
            else:
                require(isinstance(v, str) and v.isdigit(), f"{fn}: {k}={v!r} must be a whole number (as a string)")
    api_env = effective_env(t, "RunApiFunction")
    api_timeout_ms = effective(t, "RunApiFunction", "Timeout") * 1000
    require(api_timeout_ms <= 29_000, "RunApiFunction: Timeout must leave API Gateway's 30 s integration limit")
    budget = int(api_env.get("STOP_BUDGET_MS", "10000")) + int(api_env.get("DEADLINE_MARGIN_MS", "500"))
    require(budget < api_timeout_ms, f"RunApiFunction: STOP_BUDGET_MS + DEADLINE_MARGIN_MS = {budget} >= timeout {api_timeout_ms}")
    fin_env = effective_env(t, "StopFinalizerFunction")
    fin_timeout_ms = effective(t, "StopFinalizerFunction", "Timeout") * 1000
    wait = int(fin_env.get("FINALIZER_WAIT_MS", "120000")) + int(fin_env.get("DEADLINE_MARGIN_MS", "2000"))
    require(wait < fin_timeout_ms, f"StopFinalizerFunction: FINALIZER_WAIT_MS + DEADLINE_MARGIN_MS = {wait} >= timeout {fin_timeout_ms}")
    rec_env = effective_env(t, RECONCILER)
    rec_timeout_ms = effective(t, RECONCILER, "Timeout") * 1000
    require(rec_timeout_ms <= 60_000, f"{RECONCILER}: Timeout {rec_timeout_ms} ms: one pass must fit in the one-minute tick")
    wait = int(rec_env.get("FINALIZER_WAIT_MS", "120000")) + int(rec_env.get("DEADLINE_MARGIN_MS", "2000"))
    require(wait < rec_timeout_ms, f"{RECONCILER}: FINALIZER_WAIT_MS + DEADLINE_MARGIN_MS = {wait} >= timeout {rec_timeout_ms}")
    for k in SHARED_WITH_FINALIZER:
        require(rec_env.get(k) == fin_env.get(k), f"{RECONCILER}: {k}={rec_env.get(k)!r}, the finalizer has {fin_env.get(k)!r}")
    require(rec_env.get("STOPPING_INDEX") == STOPPING_INDEX, f"{RECONCILER}: STOPPING_INDEX must be {STOPPING_INDEX}")
    # RECONCILE_AFTER_MS = ReconcileAfterSeconds x 1000; the function accepts 1 s .. 24 h.
    lo, hi = param_bounds(t, {"Ref": "ReconcileAfterSeconds"})
    require(30 <= lo and hi <= 86_400, f"ReconcileAfterSeconds can be {lo}..{hi}, must stay within 30..86400")
    require(param_default(t, {"Ref": "ReconcileAfterSeconds"}) == 60, "ReconcileAfterSeconds defaults to 60")
    require(t["Parameters"]["ReconcileAfterSeconds"].get("Type") == "Number", "ReconcileAfterSeconds must be a Number")


def test_run_table(t: dict) -> None:
    """Run table: on-demand, the (WorkflowArn, RunId) keys, a
    NEW_AND_OLD_IMAGES stream, PITR, SSE, deletion protection on by default."""
    p = props(t, "RunsTable")
    require(t["Resources"]["RunsTable"]["Type"] == "AWS::DynamoDB::Table", "RunsTable is not a DynamoDB table")
    require(p.get("BillingMode") == "PAY_PER_REQUEST", "on-demand billing expected")
    keys = {k["AttributeName"]: k["KeyType"] for k in p.get("KeySchema", [])}
    require(keys == {"WorkflowArn": "HASH", "RunId": "RANGE"}, f"key schema {keys}")
    attrs = {a["AttributeName"]: a["AttributeType"] for a in p.get("AttributeDefinitions", [])}
    require(attrs == {"WorkflowArn": "S", "RunId": "S", "StoppingShard": "S", "StoppingSince": "S"},
            f"attribute definitions {attrs}")
    require(p.get("StreamSpecification", {}).get("StreamViewType") == "NEW_AND_OLD_IMAGES", "stream NEW_AND_OLD_IMAGES expected")
    require(p.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled") is True, "PITR expected")
    require(p.get("SSESpecification", {}).get("SSEEnabled") is True, "SSE (KMS) expected")
    dp = p.get("DeletionProtectionEnabled")
    require(dp == {"Fn::If": ["ProtectTable", True, False]}, f"DeletionProtectionEnabled {dp}")
    param = t["Parameters"]["TableDeletionProtection"]
    require(param.get("Default") == "true", "deletion protection must default to on")
    require(t["Conditions"]["ProtectTable"] == {"Fn::Equals": [{"Ref": "TableDeletionProtection"}, "true"]}, "ProtectTable condition")


def test_stopping_runs_index(t: dict) -> None:
    """The sparse GSI StoppingRuns: StoppingShard (S, HASH) and StoppingSince
    (S, RANGE), keys only, on-demand like the table (no provisioned
    throughput), and the only index of the table."""
    p = props(t, "RunsTable")
    gsis = p.get("GlobalSecondaryIndexes") or []
    require([g.get("IndexName") for g in gsis] == [STOPPING_INDEX], f"GSIs {[g.get('IndexName') for g in gsis]}")
    require(not p.get("LocalSecondaryIndexes"), "no local secondary index expected")
    (gsi,) = gsis
    keys = {k["AttributeName"]: k["KeyType"] for k in gsi.get("KeySchema", [])}
    require(keys == STOPPING_INDEX_KEYS, f"{STOPPING_INDEX} key schema {keys}")
    require(gsi.get("Projection") == {"ProjectionType": "KEYS_ONLY"}, f"{STOPPING_INDEX} projection {gsi.get('Projection')}")
    require("ProvisionedThroughput" not in gsi and p.get("BillingMode") == "PAY_PER_REQUEST",
            f"{STOPPING_INDEX} must be on-demand like the table")
    attrs = {a["AttributeName"]: a["AttributeType"] for a in p.get("AttributeDefinitions", [])}
    for k in STOPPING_INDEX_KEYS:
        require(attrs.get(k) == "S", f"{k} must be defined as S")


def test_iam_reconciler_grants_exactly_its_statements(t: dict) -> None:
    """IAM, the reconciler: exactly the statements of RECONCILER_STATEMENTS,
    action for action: Query on the StoppingRuns index ARN only, GetItem and
    UpdateItem on the table, the finalizer's ECS grants with their
    conditions; no Scan, no stream access, no SQS, nothing else."""
    got = {}
    for st in role_statements(t, "ReconcilerRole"):
        sid = st.get("Sid")
        require(sid not in got, f"ReconcilerRole: Sid {sid} twice")
        require(st.get("Effect") == "Allow", f"ReconcilerRole/{sid}: Allow expected")
        require(set(st) <= {"Sid", "Effect", "Action", "Resource", "Condition"}, f"ReconcilerRole/{sid}: keys {sorted(st)}")
        got[sid] = (sorted(as_list(st.get("Action", []))), st.get("Resource"), st.get("Condition"))
    want = {sid: (sorted(a), r, c) for sid, (a, r, c) in RECONCILER_STATEMENTS.items()}
    require(canon(got) == canon(want), f"ReconcilerRole statements:\n  {canon(got)}\nexpected\n  {canon(want)}")
    actions = {a for acts, _, _ in got.values() for a in acts}
    for forbidden in ("dynamodb:Scan", "dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:DescribeStream",
                      "dynamodb:ListStreams", "dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"):
        require(forbidden not in actions, f"ReconcilerRole grants {forbidden}")
    require(not any(a.startswith("sqs:") for a in actions), "ReconcilerRole grants SQS")
    # The index the role may query is the table's StoppingRuns GSI, and only
    # the reconciler may query at all.
    gsis = [g.get("IndexName") for g in props(t, "RunsTable").get("GlobalSecondaryIndexes") or []]
    require(STOPPING_INDEX in gsis, f"the role's index {STOPPING_INDEX} is not on the table ({gsis})")
    for role in ALLOWED:
        if role != "ReconcilerRole":
            for st in role_statements(t, role):
                require("dynamodb:Query" not in as_list(st.get("Action", [])), f"{role} grants dynamodb:Query")
        for st in role_statements(t, role):
            require("dynamodb:Scan" not in as_list(st.get("Action", [])), f"{role} grants dynamodb:Scan")


def test_reconciler_schedule(t: dict) -> None:
    """The reconciler runs once a minute on a schedule, its only trigger, with
    no asynchronous retries piling onto the next tick."""
    events = props(t, RECONCILER).get("Events") or {}
    require(len(events) == 1, f"{RECONCILER}: exactly one trigger expected, found {sorted(events)}")
    (ev,) = events.values()
    require(ev.get("Type") in ("Schedule", "ScheduleV2"), f"{RECONCILER}: trigger {ev.get('Type')}, expected a schedule")
    ep = ev.get("Properties") or {}
    expr = ep.get("Schedule") or ep.get("ScheduleExpression")
    require(expr == "rate(1 minute)", f"{RECONCILER}: schedule {expr!r}, expected rate(1 minute)")
    require(ep.get("Enabled", True) is True and ep.get("State", "ENABLED") == "ENABLED", f"{RECONCILER}: schedule disabled")
    invoke = props(t, RECONCILER).get("EventInvokeConfig") or {}
    require(invoke.get("MaximumRetryAttempts") == 0, f"{RECONCILER}: asynchronous retries {invoke.get('MaximumRetryAttempts')}, expected 0")
    require(invoke.get("MaximumEventAgeInSeconds", 0) <= 60, f"{RECONCILER}: a tick older than a minute must be dropped")


def test_every_function_reports_metrics_for_its_stack(t: dict) -> None:
    """METRICS_STACK (the Stack dimension of the service's metrics, which the
    alarm and the dashboard select) is the stack name on every function."""
    for fn in FUNCTIONS:
        env = effective_env(t, fn)
        require(env.get("METRICS_STACK") == {"Ref": "AWS::StackName"}, f"{fn}: METRICS_STACK must be !Ref AWS::StackName")


def test_stranded_stop_alarm(t: dict) -> None:
    """StrandedStopAlarm: the oldest STOPPING run's age (Maximum, 60 s, 3
    periods) above StrandedStopAlarmSeconds, for this stack; missing data is
    breaching (a silent reconciler is the problem); the optional topic."""
    require("StrandedStopAlarm" in resources(t, "AWS::CloudWatch::Alarm"), "StrandedStopAlarm missing")
    a = props(t, "StrandedStopAlarm")
    require(a.get("Namespace") == METRICS_NAMESPACE, f"namespace {a.get('Namespace')}")
    require(a.get("MetricName") == "OldestStoppingAgeSeconds", f"metric {a.get('MetricName')}")
    require(a.get("Dimensions") == [{"Name": "Stack", "Value": {"Ref": "AWS::StackName"}}], f"dimensions {a.get('Dimensions')}")
    require(a.get("Statistic") == "Maximum" and a.get("Period") == 60 and a.get("EvaluationPeriods") == 3,
            f"Maximum over 60 s, 3 periods expected: {a.get('Statistic')} {a.get('Period')} {a.get('EvaluationPeriods')}")
    require(a.get("DatapointsToAlarm", 3) == 3, "all 3 periods must breach")
    require(a.get("ComparisonOperator") == "GreaterThanThreshold", f"comparison {a.get('ComparisonOperator')}")
    require(a.get("Threshold") == {"Ref": "StrandedStopAlarmSeconds"}, "threshold from StrandedStopAlarmSeconds")
    require(param_default(t, a["Threshold"]) == 900, "StrandedStopAlarmSeconds defaults to 900")
    lo, _ = param_bounds(t, a["Threshold"])
    after_lo, after_hi = param_bounds(t, {"Ref": "ReconcileAfterSeconds"})
    require(lo > after_lo, "the alarm's threshold must be able to exceed the reconciler's own delay")
    require(a.get("TreatMissingData") == "breaching", f"TreatMissingData {a.get('TreatMissingData')}, expected breaching")


def dashboard_body(t: dict) -> dict:
    """The dashboard's JSON, with every ${...} of its !Sub replaced by a
    placeholder that names it: "${AWS::StackName}" -> "<AWS::StackName>"."""
    dashboards = resources(t, "AWS::CloudWatch::Dashboard")
    require(list(dashboards) == ["StopDashboard"], f"one dashboard StopDashboard expected: {sorted(dashboards)}")
    body = props(t, "StopDashboard").get("DashboardBody")
    require(isinstance(body, dict) and isinstance(body.get("Fn::Sub"), str), "DashboardBody must be !Sub of a JSON string")
    text = body["Fn::Sub"]
    # Numbers (a parameter's value) unquoted, names inside strings.
    text = re.sub(r'(?<!")\$\{([^}]+)\}(?!")', r"0", text)
    text = re.sub(r"\$\{([^}]+)\}", r"<\1>", text)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise CheckFailed(f"DashboardBody is not JSON: {e}") from e


def dashboard_metrics(body: dict) -> list[list]:
    out = []
    for w in body.get("widgets", []):
        for m in (w.get("properties") or {}).get("metrics") or []:
            out.append([x for x in m if not isinstance(x, dict)])
    return out


def test_dashboard_shows_every_metric(t: dict) -> None:
    """The dashboard: every metric of the service (namespace
    MwaaServerlessStop, dimension Stack = this stack), each function's Lambda
    errors, the finalizer's iterator age and the failure queue."""
    metrics = dashboard_metrics(dashboard_body(t))
    for name in METRICS:
        require([METRICS_NAMESPACE, name, "Stack", "<AWS::StackName>"] in metrics, f"dashboard: {name} of this stack missing")
    for m in metrics:
        if m[0] == METRICS_NAMESPACE:
            require(m[1] in METRICS, f"dashboard: unknown metric {m[1]}")
            require(m[2:] == ["Stack", "<AWS::StackName>"], f"dashboard: {m[1]} must select Stack = the stack name")
    for fn in FUNCTIONS:
        require(["AWS/Lambda", "Errors", "FunctionName", f"<{fn}>"] in metrics, f"dashboard: {fn} Errors missing")
    require(["AWS/Lambda", "IteratorAge", "FunctionName", "<StopFinalizerFunction>"] in metrics,
            "dashboard: the finalizer's IteratorAge missing")
    require(["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", "<FinalizerFailureQueue.QueueName>"] in metrics,
            "dashboard: the failure queue missing")


def test_iam_worker_cluster_arns_accepts_only_exact_cluster_arns(t: dict) -> None:
    """IAM: WorkerClusterArns (the ecs:cluster condition of the ECS grants) has
    no default and accepts only exact cluster ARNs, no wildcards."""
    p = t["Parameters"]["WorkerClusterArns"]
    require(p.get("Type") == "CommaDelimitedList", "WorkerClusterArns must be a CommaDelimitedList")
    require("Default" not in p, "WorkerClusterArns must have no default")
    pattern = re.compile(p.get("AllowedPattern", ""))
    good = "arn:aws:ecs:us-east-1:123456789012:cluster/workers"
    require(pattern.fullmatch(good) is not None, f"AllowedPattern rejects {good}")
    for bad in ("*", "arn:aws:ecs:us-east-1:123456789012:cluster/*", "arn:aws:ecs:*:*:cluster/x", "workers", ""):
        require(pattern.fullmatch(bad) is None, f"AllowedPattern accepts {bad!r}")


def stream_event(t: dict) -> dict:
    events = props(t, "StopFinalizerFunction").get("Events", {})
    streams = [e for e in events.values() if e.get("Type") == "DynamoDB"]
    require(len(streams) == 1, f"one DynamoDB event expected, found {len(streams)}")
    require(len(events) == 1, "the finalizer has no other triggers")
    return streams[0].get("Properties", {})


def check_stream_consumer(t: dict, p: dict, queue: str) -> None:
    """What every mapping of the table's stream must have: the stream, batch
    item failures, bisect on error, finite retries and record age, and an
    encrypted SQS OnFailure queue (`queue`)."""
    require(p.get("Stream") == getatt("RunsTable", "StreamArn"), "Stream must be !GetAtt RunsTable.StreamArn")
    require(p.get("FunctionResponseTypes") == ["ReportBatchItemFailures"], "FunctionResponseTypes [ReportBatchItemFailures]")
    require(p.get("BisectBatchOnFunctionError") is True, "BisectBatchOnFunctionError: true expected")
    lo, hi = param_bounds(t, p.get("MaximumRetryAttempts", -1))
    require(0 <= lo and hi <= 100, f"MaximumRetryAttempts must be finite (0..100), can be {lo}..{hi}")
    lo, hi = param_bounds(t, p.get("MaximumRecordAgeInSeconds", -1))
    require(60 <= lo and hi <= 86_400, f"MaximumRecordAgeInSeconds must be finite (60..86400), can be {lo}..{hi}")
    on_failure = ((p.get("DestinationConfig") or {}).get("OnFailure") or {})
    require(on_failure.get("Type") == "SQS", "OnFailure destination must be SQS")
    dest = on_failure.get("Destination")
    require(dest == getatt(queue, "Arn"), f"OnFailure destination {dest}")
    q = props(t, queue)
    require(q.get("KmsMasterKeyId") or q.get("SqsManagedSseEnabled") is True, f"{queue} must be encrypted")


def test_stream_mapping(t: dict) -> None:
    """Stream mapping: the STOPPING filter, batch item failures, bisect on error,
    finite retries and record age, parallelization, an encrypted SQS
    OnFailure queue."""
    p = stream_event(t)
    check_stream_consumer(t, p, "FinalizerFailureQueue")
    require(isinstance(p.get("ParallelizationFactor"), int) and p["ParallelizationFactor"] > 1,
            "ParallelizationFactor > 1 expected (one slow run must not hold up a shard)")
    filters = (p.get("FilterCriteria") or {}).get("Filters") or []
    require(len(filters) == 1, "exactly one filter expected")
    require(json.loads(filters[0]["Pattern"]) == STOPPING_FILTER, f"filter {filters[0]['Pattern']}")


def test_run_events(t: dict) -> None:
    """Run events (docs/events.md): a second consumer of the table's stream,
    unfiltered (every transition, whoever wrote it), batch item failures,
    bisect on error, finite retries and record age, an encrypted SQS OnFailure
    queue with its own alarm; EventSource can never start with "aws." (which
    EventBridge refuses for custom events; moto does not check); the bus and
    the source reach the function from the parameters."""
    events = props(t, RUN_EVENTS).get("Events", {})
    require(len(events) == 1, "run-events has exactly one trigger")
    (ev,) = events.values()
    p = ev.get("Properties", {})
    require(ev.get("Type") == "DynamoDB", "a DynamoDB stream trigger")
    require(not p.get("FilterCriteria"), "no filter: every transition, whoever wrote it")
    check_stream_consumer(t, p, "RunEventsFailureQueue")
    alarms = [a.get("Properties", {}) for a in resources(t, "AWS::CloudWatch::Alarm").values()]
    require(any(a.get("MetricName") == "ApproximateNumberOfMessagesVisible"
                and {"Name": "QueueName", "Value": getatt("RunEventsFailureQueue", "QueueName")} in (a.get("Dimensions") or [])
                for a in alarms), "alarm on messages in the run-events failure queue")
    require(any(a.get("Namespace") == METRICS_NAMESPACE and a.get("MetricName") == "RunEventsFailed" for a in alarms),
            "alarm on run events the bus refused")
    source = t["Parameters"]["EventSource"]
    require(source.get("Default") == "mwaa-stop", "EventSource defaults to mwaa-stop")
    pattern = re.compile(source["AllowedPattern"])
    for ok in ("mwaa-stop", "acme.platform.stops", "awsome"):
        require(pattern.fullmatch(ok) is not None, f"EventSource refuses {ok!r}")
    for bad in ("aws.airflow-serverless", "AWS.x", "Aws.x", "", "has space", "x" * 257):
        require(pattern.fullmatch(bad) is None, f"EventSource accepts {bad!r}")
    require(t["Parameters"]["EventBusName"].get("Default") == "default", "EventBusName defaults to the default bus")


def test_http_api(t: dict) -> None:
    """HTTP API: one POST / route with AWS_IAM, payload 2.0, throttling from the
    parameters, access logs (with the request id) into a group with retention."""
    apis = resources(t, "AWS::Serverless::HttpApi")
    require(list(apis) == ["HttpApi"], f"one AWS::Serverless::HttpApi expected: {sorted(apis)}")
    require(not resources(t, "AWS::Serverless::Api"), "no REST API expected")
    p = props(t, "HttpApi")
    auth = p.get("Auth", {})
    require(auth.get("EnableIamAuthorizer") is True and auth.get("DefaultAuthorizer") == "AWS_IAM", "IAM authorizer by default")
    route = props(t, "RunApiFunction").get("Events", {})
    require(len(route) == 1, "run-api has exactly one trigger")
    (ev,) = route.values()
    ep = ev.get("Properties", {})
    require(ev.get("Type") == "HttpApi" and ep.get("ApiId") == {"Ref": "HttpApi"}, "run-api is triggered by HttpApi")
    require(ep.get("Method") == "POST" and ep.get("Path") == "/", "route POST /")
    require(ep.get("PayloadFormatVersion") == "2.0", "payload format 2.0")
    require(ep.get("Auth", {}).get("Authorizer") == "AWS_IAM", "route authorizer AWS_IAM")
    rs = p.get("DefaultRouteSettings", {})
    require(rs.get("ThrottlingBurstLimit") == {"Ref": "ApiThrottlingBurstLimit"}, "burst limit from the parameter")
    require(rs.get("ThrottlingRateLimit") == {"Ref": "ApiThrottlingRateLimit"}, "rate limit from the parameter")
    logs = p.get("AccessLogSettings", {})
    require(logs.get("DestinationArn") == sub("arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:"
                                              "${ApiAccessLogGroup}"), "access logs to ApiAccessLogGroup")
    require("$context.requestId" in logs.get("Format", ""), "access log format has the request id")
    require(props(t, "ApiAccessLogGroup").get("RetentionInDays") is not None, "access log group retention")


def test_alarms(t: dict) -> None:
    """Alarms: failure queue messages, each function's errors, the API's and
    the finalizer's throttles, API 5xx, the oldest STOPPING run, all
    notifying the optional SNS topic."""
    alarms = [a.get("Properties", {}) for a in resources(t, "AWS::CloudWatch::Alarm").values()]

    def has(namespace: str, metric: str, dim: str, value: Any) -> bool:
        return any(a.get("Namespace") == namespace and a.get("MetricName") == metric
                   and {"Name": dim, "Value": value} in (a.get("Dimensions") or []) for a in alarms)

    require(has("AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", getatt("FinalizerFailureQueue", "QueueName")),
            "alarm on messages in the failure queue")
    for fn in FUNCTIONS:
        require(has("AWS/Lambda", "Errors", "FunctionName", {"Ref": fn}), f"alarm on {fn} Errors")
    # A throttled reconciler tick is caught by StrandedStopAlarm (missing data
    # is breaching); the other two are throttled by their own alarms.
    for fn in ("RunApiFunction", "StopFinalizerFunction"):
        require(has("AWS/Lambda", "Throttles", "FunctionName", {"Ref": fn}), f"alarm on {fn} Throttles")
    require(has(METRICS_NAMESPACE, "OldestStoppingAgeSeconds", "Stack", {"Ref": "AWS::StackName"}),
            "alarm on the oldest STOPPING run (StrandedStopAlarm)")
    require(has("AWS/ApiGateway", "5xx", "ApiId", {"Ref": "HttpApi"}), "alarm on API 5xx")
    require(t["Parameters"]["AlarmTopicArn"].get("Default") == "", "AlarmTopicArn is optional")
    for name in EVENT_ALARMS:
        require(has(METRICS_NAMESPACE, name, "Stack", {"Ref": "AWS::StackName"}), f"alarm on {name}")


GIVEN_TOPIC = "arn:aws:sns:us-east-1:123456789012:ops-pager"
GIVEN_EMAIL = "oncall@example.com"
# (parameters, the topic every alarm must notify, the email subscribed or None)
TOPIC_CASES = [
    ({}, {"Ref": "AlarmTopic"}, None),
    ({"AlarmEmail": GIVEN_EMAIL}, {"Ref": "AlarmTopic"}, GIVEN_EMAIL),
    ({"AlarmTopicArn": GIVEN_TOPIC}, GIVEN_TOPIC, None),
    # The email subscribes only to the stack's own topic, never to a given one.
    ({"AlarmTopicArn": GIVEN_TOPIC, "AlarmEmail": GIVEN_EMAIL}, GIVEN_TOPIC, None),
]


def test_every_alarm_notifies_a_topic(t: dict) -> None:
    """Alarms page someone by default: with AlarmTopicArn empty the stack
    creates AlarmTopic (and its key), and only then; AlarmEmail subscribes
    to it, only then; with every combination of the two parameters, every
    alarm's AlarmActions and OKActions are exactly the chosen topic, and the
    output AlarmNotificationTopicArn names it."""
    params = t.get("Parameters", {})
    for name in ("AlarmTopicArn", "AlarmEmail"):
        require(params.get(name, {}).get("Default") == "", f"parameter {name} must default to empty")
    email = re.compile(params["AlarmEmail"].get("AllowedPattern", ".*"))
    require(email.fullmatch(GIVEN_EMAIL) is not None and email.fullmatch("") is not None, "AlarmEmail: empty or an address")
    for bad in ("oncall", "oncall@example", "a@example.com,b@example.com", "a b@example.com", "https://example.com"):
        require(email.fullmatch(bad) is None, f"AlarmEmail accepts {bad!r}")
    topic_arn = re.compile(params["AlarmTopicArn"].get("AllowedPattern", ".*"))
    require(topic_arn.fullmatch(GIVEN_TOPIC) is not None, f"AlarmTopicArn rejects {GIVEN_TOPIC}")
    alarms = resources(t, "AWS::CloudWatch::Alarm")
    require(len(alarms) >= 12, f"alarms: {sorted(alarms)}")
    for case, target, subscribed in TOPIC_CASES:
        label = canon(case)
        topics = deployed(t, case, "AWS::SNS::Topic")
        keys = deployed(t, case, "AWS::KMS::Key")
        if target == {"Ref": "AlarmTopic"}:
            require(list(topics) == ["AlarmTopic"], f"{label}: the stack must create AlarmTopic alone, creates {sorted(topics)}")
            require(list(keys) == ["AlarmTopicKey"], f"{label}: the stack must create AlarmTopicKey alone, creates {sorted(keys)}")
        else:
            require(not topics and not keys, f"{label}: a topic is given, yet the stack creates {sorted(topics) + sorted(keys)}")
        subs = deployed(t, case, "AWS::SNS::Subscription")
        if subscribed is None:
            require(not subs, f"{label}: no subscription expected, found {sorted(subs)}")
        else:
            require(len(subs) == 1, f"{label}: one email subscription expected, found {sorted(subs)}")
            (sp,) = [resolve(t, v.get("Properties", {}), case) for v in subs.values()]
            require(sp.get("Protocol") == "email" and sp.get("Endpoint") == subscribed
                    and sp.get("TopicArn") == {"Ref": "AlarmTopic"}, f"{label}: subscription {canon(sp)}")
        for name, alarm in deployed(t, case, "AWS::CloudWatch::Alarm").items():
            p = resolve(t, alarm.get("Properties", {}), case)
            for key in ("AlarmActions", "OKActions"):
                require(p.get(key) == [target], f"{label}: {name}.{key} is {canon(p.get(key))}, expected [{canon(target)}]")
        out = resolve(t, (t.get("Outputs", {}).get("AlarmNotificationTopicArn") or {}).get("Value"), case)
        require(out == target, f"{label}: output AlarmNotificationTopicArn is {canon(out)}, expected {canon(target)}")


def test_alarm_topic_is_encrypted_with_a_key_cloudwatch_may_use(t: dict) -> None:
    """The created topic is encrypted with its own customer managed key (with
    rotation): SNS's AWS managed key (alias/aws/sns) does not let CloudWatch
    alarms publish. The key policy is exactly the account's administration
    through IAM plus Decrypt and GenerateDataKey* for CloudWatch alarms of
    this account."""
    topic = props(t, "AlarmTopic")
    require(topic.get("KmsMasterKeyId") == {"Ref": "AlarmTopicKey"}, f"AlarmTopic KmsMasterKeyId {topic.get('KmsMasterKeyId')}")
    key = props(t, "AlarmTopicKey")
    require(key.get("EnableKeyRotation") is True, "AlarmTopicKey: key rotation expected")
    require(t["Resources"]["AlarmTopicKey"].get("Condition") == t["Resources"]["AlarmTopic"].get("Condition"),
            "AlarmTopicKey must exist exactly when AlarmTopic does")
    statements = {st.get("Sid"): st for st in as_list((key.get("KeyPolicy") or {}).get("Statement", []))}
    want = {
        "AccountAdministersThroughIam": {
            "Sid": "AccountAdministersThroughIam", "Effect": "Allow",
            "Principal": {"AWS": sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:root")},
            "Action": "kms:*", "Resource": "*"},
        "CloudWatchAlarmsPublish": {
            "Sid": "CloudWatchAlarmsPublish", "Effect": "Allow",
            "Principal": {"Service": "cloudwatch.amazonaws.com"},
            "Action": ["kms:Decrypt", "kms:GenerateDataKey*"], "Resource": "*",
            "Condition": {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}},
    }
    require(canon(statements) == canon(want), f"AlarmTopicKey policy:\n  {canon(statements)}\nexpected\n  {canon(want)}")


def test_event_alarms(t: dict) -> None:
    """The alarms on what should never happen: ReconcilerUnreadableEntries (an
    index entry the reconciler cannot read), StoppedWithUnconfirmedWorkers (a
    run finalized at the stop deadline with workers not confirmed dead),
    LateWorkersFound (a worker alive after STOPPED): each the metric of this
    stack, Sum > 0 in one period, missing data not breaching."""
    alarms = [a.get("Properties", {}) for a in resources(t, "AWS::CloudWatch::Alarm").values()]
    for metric, period in EVENT_ALARMS.items():
        found = [a for a in alarms if a.get("MetricName") == metric]
        require(len(found) == 1, f"one alarm on {metric} expected, found {len(found)}")
        (a,) = found
        require(a.get("Namespace") == METRICS_NAMESPACE, f"{metric}: namespace {a.get('Namespace')}")
        require(a.get("Dimensions") == [{"Name": "Stack", "Value": {"Ref": "AWS::StackName"}}],
                f"{metric}: dimensions {a.get('Dimensions')}")
        require(a.get("Statistic") == "Sum" and a.get("Threshold") == 0
                and a.get("ComparisonOperator") == "GreaterThanThreshold", f"{metric}: Sum > 0 expected")
        require(a.get("Period") == period and a.get("EvaluationPeriods") == 1
                and a.get("DatapointsToAlarm", 1) == 1, f"{metric}: one period of {period} s expected")
        require(a.get("TreatMissingData") == "notBreaching", f"{metric}: TreatMissingData {a.get('TreatMissingData')}")


def test_stop_deadline(t: dict) -> None:
    """StopDeadlineSeconds (default 600; at least Fargate's maximum
    stopTimeout of 120 s plus deprovisioning; at most a day) reaches the
    finalizer and the reconciler as STOP_DEADLINE_SECONDS; it is longer than
    the finalizer's own wait, and with the defaults the reconciler acts before
    it and StrandedStopAlarm only after it (plus a tick)."""
    p = t["Parameters"].get("StopDeadlineSeconds") or {}
    require(p.get("Type") == "Number", "StopDeadlineSeconds must be a Number")
    require(p.get("Default") == 600, f"StopDeadlineSeconds defaults to {p.get('Default')}, expected 600")
    lo, hi = param_bounds(t, {"Ref": "StopDeadlineSeconds"})
    require(lo >= FARGATE_MAX_STOP_TIMEOUT_S + DEPROVISIONING_S and hi <= 86_400,
            f"StopDeadlineSeconds can be {lo}..{hi}, must stay within {FARGATE_MAX_STOP_TIMEOUT_S + DEPROVISIONING_S}..86400")
    for fn in PACED_FUNCTIONS:
        env = effective_env(t, fn)
        require(env.get("STOP_DEADLINE_SECONDS") == {"Ref": "StopDeadlineSeconds"},
                f"{fn}: STOP_DEADLINE_SECONDS must be !Ref StopDeadlineSeconds, is {env.get('STOP_DEADLINE_SECONDS')}")
    require("STOP_DEADLINE_SECONDS" not in effective_env(t, "RunApiFunction"), "run-api has no stop deadline")
    wait_ms = int(effective_env(t, "StopFinalizerFunction").get("FINALIZER_WAIT_MS", "120000"))
    require(lo * 1000 > wait_ms, f"StopDeadlineSeconds can be {lo} s, within the finalizer's own wait ({wait_ms} ms)")
    reconcile_after = param_default(t, {"Ref": "ReconcileAfterSeconds"})
    stranded = param_default(t, {"Ref": "StrandedStopAlarmSeconds"})
    require(reconcile_after < p["Default"], "the reconciler must take a run over before its stop deadline")
    require(p["Default"] + 60 < stranded, "StrandedStopAlarm must not fire for a run the deadline finalizes on the next tick")


def ecs_env(t: dict, fn: str) -> dict[str, int]:
    env = effective_env(t, fn)
    out = {}
    for var, default in ECS_ENV_DEFAULTS.items():
        raw = env.get(var, str(default))
        require(isinstance(raw, str) and raw.isdigit(), f"{fn}: {var}={raw!r} must be a whole number")
        out[var] = int(raw)
    return out


def test_ecs_rate_budget(t: dict) -> None:
    """ECS rate budget (docs/deploy.md): the finalizer and the reconciler each
    have reserved concurrency (their most processes), and their processes'
    paced rates add up to no more than ECS's account buckets: StopTask,
    each process at ECS_STOP_RATE x (1 - reserve) (EcsRates::for_finalizer),
    within 40/s x (1 - reserve); reads (no reserve) within 20/s, read bursts
    within the bucket's 100. Absent variables count at src/config.rs's
    defaults (the whole account per process)."""
    stop = read = burst = 0.0
    reserves = set()
    for fn in PACED_FUNCTIONS:
        n = props(t, fn).get("ReservedConcurrentExecutions")
        require(isinstance(n, int) and n >= 1, f"{fn}: ReservedConcurrentExecutions must be a whole number >= 1, is {n!r}")
        e = ecs_env(t, fn)
        require(e["ECS_STOP_RATE"] >= 1 and e["ECS_READ_RATE"] >= 1 and e["ECS_READ_BURST"] >= 1, f"{fn}: rates >= 1")
        reserve = e["ECS_RUNTASK_RESERVE_PERCENT"] / 100
        reserves.add(reserve)
        stop += n * e["ECS_STOP_RATE"] * (1 - reserve)
        read += n * e["ECS_READ_RATE"]
        burst += n * e["ECS_READ_BURST"]
    require(len(reserves) == 1, f"the finalizer and the reconciler must leave the same RunTask reserve: {sorted(reserves)}")
    (reserve,) = reserves
    require(reserve >= 0.1, f"the RunTask reserve is {reserve:.0%}, expected at least 10%")
    budget = ECS_ACCOUNT_STOP_RATE * (1 - reserve)
    require(stop <= budget + 1e-9, f"StopTask: the paced processes take {stop:g}/s, the budget is {budget:g}/s")
    require(read <= ECS_ACCOUNT_READ_RATE, f"reads: the paced processes take {read:g}/s, the bucket refills {ECS_ACCOUNT_READ_RATE}/s")
    require(burst <= ECS_ACCOUNT_READ_BURST, f"reads: the paced processes' bursts add up to {burst:g}, the bucket holds {ECS_ACCOUNT_READ_BURST}")
    # The stream may ask for more finalizers than that: reserved concurrency
    # caps them (the rest wait in their shards).
    require(stream_event(t).get("ParallelizationFactor", 1) >= props(t, "StopFinalizerFunction")["ReservedConcurrentExecutions"],
            "ParallelizationFactor below the finalizer's reserved concurrency: the budget would be unused")


def test_outputs(t: dict) -> None:
    """Outputs: ApiUrl, RunsTableName, FailureQueueUrl, each function's name."""
    outs = t.get("Outputs", {})
    for name in ("ApiUrl", "RunsTableName", "FailureQueueUrl"):
        require(name in outs, f"output {name} missing")
    for name, fn in (("RunApiFunctionName", "RunApiFunction"), ("StopFinalizerFunctionName", "StopFinalizerFunction"),
                     ("StopReconcilerFunctionName", RECONCILER)):
        require((outs.get(name) or {}).get("Value") == {"Ref": fn}, f"output {name} must be !Ref {fn}")
    require(outs["RunsTableName"]["Value"] == {"Ref": "RunsTable"}, "RunsTableName")
    require(outs["FailureQueueUrl"]["Value"] == {"Ref": "FinalizerFailureQueue"}, "FailureQueueUrl")
    require("${HttpApi}.execute-api." in canon(outs["ApiUrl"]["Value"]), "ApiUrl")


def test_samconfig(samconfig: Path) -> None:
    """samconfig.toml: beta features for the Rust build, CAPABILITY_IAM,
    changeset confirmation."""
    import tomllib

    path = samconfig
    require(path.is_file(), f"{path} missing")
    conf = tomllib.loads(path.read_text())
    build = conf.get("default", {}).get("build", {}).get("parameters", {})
    require(build.get("beta_features") is True, "samconfig: build.beta_features = true (rust-cargolambda is beta)")
    deploy = conf.get("default", {}).get("deploy", {}).get("parameters", {})
    require("CAPABILITY_IAM" in str(deploy.get("capabilities")), "samconfig: deploy capabilities CAPABILITY_IAM")
    require(deploy.get("confirm_changeset") is True, "samconfig: confirm_changeset = true")


# ---------------------------------------------------- the checker checks itself


def mutations() -> list[tuple[str, Callable[[dict], None]]]:
    def stmts(t: dict, role: str) -> list:
        return t["Resources"][role]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]

    def add_action(role: str, action: str) -> Callable[[dict], None]:
        return lambda t: stmts(t, role)[0]["Action"].append(action)

    def set_resource(role: str, sid: str, res: Any) -> Callable[[dict], None]:
        def f(t: dict) -> None:
            next(s for s in stmts(t, role) if s.get("Sid") == sid)["Resource"] = res
        return f

    def drop_condition(role: str, sid: str) -> Callable[[dict], None]:
        def f(t: dict) -> None:
            next(s for s in stmts(t, role) if s.get("Sid") == sid).pop("Condition")
        return f

    def set_env(t: dict) -> None:
        t["Resources"]["RunApiFunction"]["Properties"]["Environment"]["Variables"][LOCAL_AUTH_VAR] = "true"

    def api_env(t: dict) -> dict:
        return t["Resources"]["RunApiFunction"]["Properties"]["Environment"]["Variables"]

    def set_global_env(t: dict) -> None:
        t["Globals"]["Function"]["Environment"] = {"Variables": {LOCAL_AUTH_VAR: "false"}}

    def stream(t: dict) -> dict:
        return t["Resources"]["StopFinalizerFunction"]["Properties"]["Events"]["RunTableStream"]["Properties"]

    def add_statement(role: str, actions: list[str], resource: Any) -> Callable[[dict], None]:
        return lambda t: stmts(t, role).append({"Sid": "Extra", "Effect": "Allow", "Action": actions, "Resource": resource})

    def rec_env(t: dict) -> dict:
        return t["Resources"][RECONCILER]["Properties"]["Environment"]["Variables"]

    def fin_env(t: dict) -> dict:
        return t["Resources"]["StopFinalizerFunction"]["Properties"]["Environment"]["Variables"]

    def gsi(t: dict) -> dict:
        return t["Resources"]["RunsTable"]["Properties"]["GlobalSecondaryIndexes"][0]

    def alarm(t: dict) -> dict:
        return t["Resources"]["StrandedStopAlarm"]["Properties"]

    def drop_dashboard_metric(name: str) -> Callable[[dict], None]:
        def f(t: dict) -> None:
            body = t["Resources"]["StopDashboard"]["Properties"]["DashboardBody"]
            lines = body["Fn::Sub"].splitlines(keepends=True)
            kept = [line for line in lines if f'"{name}"' not in line]
            if len(kept) == len(lines):
                raise ValueError(f"{name} not on the dashboard")
            # Keep the JSON valid: a removed last array element leaves a comma.
            body["Fn::Sub"] = re.sub(r",(\s*\])", r"\1", "".join(kept))
        return f

    return [
        ("IAM: an extra action (dynamodb:Scan) is caught", add_action("RunApiRole", "dynamodb:Scan")),
        ("IAM: a wildcard action (dynamodb:*) is caught", add_action("StopFinalizerRole", "dynamodb:*")),
        ("IAM: the finalizer's actions on the API role are caught", add_action("RunApiRole", "ecs:ListTasks")),
        ("IAM: the table resource widened to * is caught", set_resource("RunApiRole", "RunTable", "*")),
        ("IAM: the table's indexes added is caught", set_resource("RunApiRole", "RunTable", [
            getatt("RunsTable", "Arn"), sub("${RunsTable.Arn}/index/*")])),
        ("IAM: a dropped ecs:cluster condition is caught", drop_condition("RunApiRole", "StopWorkerTasks")),
        ("authz: the policy read widened to every parameter is caught", lambda t: next(
            s for s in stmts(t, "RunApiRole") if "Fn::If" in s)["Fn::If"][1].__setitem__(
            "Resource", sub("arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/*"))),
        ("authz: GetParametersByPath on the policy parameter is caught", lambda t: next(
            s for s in stmts(t, "RunApiRole") if "Fn::If" in s)["Fn::If"][1]["Action"].append("ssm:GetParametersByPath")),
        ("authz: the policy read granted unconditionally is caught", lambda t: stmts(t, "RunApiRole").append(
            {"Sid": "PolicySetAlways", "Effect": "Allow", "Action": ["ssm:GetParameter"], "Resource": POLICY_PARAMETER_ARN})),
        ("authz: a wildcard in the parameter name is caught", lambda t: t["Parameters"][POLICY_PARAMETER].__setitem__(
            "AllowedPattern", "^$|^/.*$")),
        ("IAM: a dropped ecs:cluster condition on ListTasks is caught", drop_condition("StopFinalizerRole", "ListWorkerTasks")),
        ("IAM: a managed policy is caught", lambda t: t["Resources"]["RunApiRole"]["Properties"].__setitem__(
            "ManagedPolicyArns", ["arn:aws:iam::aws:policy/AdministratorAccess"])),
        ("IAM: a SAM policy template on a function is caught", lambda t: t["Resources"]["RunApiFunction"]["Properties"]
            .__setitem__("Policies", [{"DynamoDBCrudPolicy": {"TableName": {"Ref": "RunsTable"}}}])),
        ("IAM: an extra AWS::IAM::Policy is caught", lambda t: t["Resources"].__setitem__("Extra", {
            "Type": "AWS::IAM::Policy", "Properties": {"Roles": [{"Ref": "RunApiRole"}]}})),
        ("IAM: a missing grant (GetItem) is caught", lambda t: stmts(t, "StopFinalizerRole")[0]["Action"].remove("dynamodb:GetItem")),
        (f"{LOCAL_AUTH_VAR} in a function's environment is caught", set_env),
        (f"{LOCAL_AUTH_VAR} in Globals is caught", set_global_env),
        (f"{LOCAL_AUTH_VAR} on the finalizer is caught", lambda t: t["Resources"]["StopFinalizerFunction"]["Properties"]
            ["Environment"]["Variables"].__setitem__(LOCAL_AUTH_VAR, LOCAL_SWITCH_ENV[LOCAL_AUTH_VAR])),
        ("local: LocalUnauthenticated defaulting to true is caught", lambda t: t["Parameters"]["LocalUnauthenticated"]
            .__setitem__("Default", "true")),
        ("local: the unauthenticated switch without a local endpoint is caught", lambda t: t["Conditions"].__setitem__(
            "AllowLocalUnauthenticated", {"Fn::Equals": [{"Ref": "LocalUnauthenticated"}, "true"]})),
        ("local: a default LocalEndpointUrl is caught", lambda t: t["Parameters"]["LocalEndpointUrl"]
            .__setitem__("Default", "http://127.0.0.1:5000")),
        ("local: any endpoint allowed is caught", lambda t: t["Parameters"]["LocalEndpointUrl"]
            .__setitem__("AllowedPattern", ".*")),
        ("local: AWS_ENDPOINT_URL set unconditionally is caught", lambda t: api_env(t).__setitem__(
            LOCAL_ENDPOINT_VAR, {"Ref": "LocalEndpointUrl"})),
        ("local: the conditions swapped is caught", lambda t: api_env(t).__setitem__(
            LOCAL_AUTH_VAR, {"Fn::If": ["UseLocalEndpoint", "true", {"Ref": "AWS::NoValue"}]})),
        ("stream: infinite retries (-1) are caught", lambda t: stream(t).__setitem__("MaximumRetryAttempts", -1)),
        ("stream: no bisect is caught", lambda t: stream(t).__setitem__("BisectBatchOnFunctionError", False)),
        ("stream: another filter is caught", lambda t: stream(t)["FilterCriteria"]["Filters"][0].__setitem__(
            "Pattern", '{"dynamodb": {"NewImage": {"Status": {"S": ["STOPPED"]}}}}')),
        ("tracing off on a function is caught", lambda t: t["Resources"]["StopFinalizerFunction"]["Properties"]
            .__setitem__("Tracing", "PassThrough")),
        ("reconciler: Scan on the table is caught", add_action("ReconcilerRole", "dynamodb:Scan")),
        ("reconciler: Query on the table itself is caught", set_resource("ReconcilerRole", "StoppingRunsIndex",
                                                                         getatt("RunsTable", "Arn"))),
        ("reconciler: Query on every index is caught", set_resource("ReconcilerRole", "StoppingRunsIndex",
                                                                    sub("${RunsTable.Arn}/index/*"))),
        ("reconciler: Scan on the index is caught", lambda t: next(
            s for s in stmts(t, "ReconcilerRole") if s.get("Sid") == "StoppingRunsIndex")["Action"].append("dynamodb:Scan")),
        ("reconciler: stream read is caught", add_statement(
            "ReconcilerRole", ["dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:DescribeStream"],
            getatt("RunsTable", "StreamArn"))),
        ("reconciler: the failure queue is caught", add_statement(
            "ReconcilerRole", ["sqs:SendMessage"], getatt("FinalizerFailureQueue", "Arn"))),
        ("reconciler: a dropped ecs:cluster condition is caught", drop_condition("ReconcilerRole", "WorkerTasks")),
        ("reconciler: a missing Query grant is caught", lambda t: stmts(t, "ReconcilerRole").__setitem__(
            slice(None), [s for s in stmts(t, "ReconcilerRole") if s.get("Sid") != "StoppingRunsIndex"])),
        ("reconciler: Query for the API role is caught", add_statement("RunApiRole", ["dynamodb:Query"], STOPPING_INDEX_ARN)),
        ("reconciler: FINALIZER_WAIT_MS past its timeout is caught", lambda t: rec_env(t).__setitem__("FINALIZER_WAIT_MS", "60000")),
        ("reconciler: a timeout longer than its tick is caught", lambda t: t["Resources"][RECONCILER]["Properties"]
            .__setitem__("Timeout", 180)),
        ("reconciler: RECONCILE_AFTER_MS in seconds is caught", lambda t: rec_env(t).__setitem__(
            "RECONCILE_AFTER_MS", {"Ref": "ReconcileAfterSeconds"})),
        ("reconciler: an hourly schedule is caught", lambda t: t["Resources"][RECONCILER]["Properties"]["Events"]
            ["EveryMinute"]["Properties"].__setitem__("Schedule", "rate(1 hour)")),
        ("reconciler: a disabled schedule is caught", lambda t: t["Resources"][RECONCILER]["Properties"]["Events"]
            ["EveryMinute"]["Properties"].__setitem__("Enabled", False)),
        ("METRICS_STACK missing on a function is caught", lambda t: t["Resources"]["RunApiFunction"]["Properties"]
            ["Environment"]["Variables"].pop("METRICS_STACK")),
        ("GSI: projection ALL is caught", lambda t: gsi(t).__setitem__("Projection", {"ProjectionType": "ALL"})),
        ("GSI: swapped keys are caught", lambda t: gsi(t).__setitem__("KeySchema", [
            {"AttributeName": "StoppingSince", "KeyType": "HASH"}, {"AttributeName": "StoppingShard", "KeyType": "RANGE"}])),
        ("GSI: a renamed index is caught", lambda t: gsi(t).__setitem__("IndexName", "Stopping")),
        ("alarm: missing data not breaching is caught", lambda t: alarm(t).__setitem__("TreatMissingData", "notBreaching")),
        ("alarm: another namespace is caught", lambda t: alarm(t).__setitem__("Namespace", "AWS/Lambda")),
        ("alarm: a fixed dimension is caught", lambda t: alarm(t).__setitem__("Dimensions", [{"Name": "Stack", "Value": "prod"}])),
        ("dashboard: a missing metric is caught", drop_dashboard_metric("ReconcilerFinds")),
        ("dashboard: a missing event metric is caught", drop_dashboard_metric("LateWorkersFound")),
        ("topic: an alarm without actions is caught", lambda t: alarm(t).pop("AlarmActions")),
        ("topic: an alarm notifying only a given topic is caught", lambda t: alarm(t).__setitem__(
            "OKActions", {"Fn::If": ["CreateAlarmTopic", {"Ref": "AWS::NoValue"}, [{"Ref": "AlarmTopicArn"}]]})),
        ("topic: created even when one is given is caught", lambda t: t["Resources"]["AlarmTopic"].pop("Condition")),
        ("topic: the AWS managed SNS key is caught", lambda t: t["Resources"]["AlarmTopic"]["Properties"].__setitem__(
            "KmsMasterKeyId", "alias/aws/sns")),
        ("topic: CloudWatch given kms:* is caught", lambda t: t["Resources"]["AlarmTopicKey"]["Properties"]["KeyPolicy"]
            ["Statement"][1].__setitem__("Action", "kms:*")),
        ("topic: the email subscribed to a given topic is caught", lambda t: t["Resources"]["AlarmEmailSubscription"]
            .__setitem__("Condition", "CreateAlarmTopic")),
        ("topic: the output naming AlarmTopicArn only is caught", lambda t: t["Outputs"]["AlarmNotificationTopicArn"]
            .__setitem__("Value", {"Ref": "AlarmTopicArn"})),
        ("event alarm: another namespace is caught", lambda t: t["Resources"]["LateWorkersFoundAlarm"]["Properties"]
            .__setitem__("Namespace", "AWS/Lambda")),
        ("event alarm: missing data breaching is caught", lambda t: t["Resources"]["StoppedWithUnconfirmedWorkersAlarm"]
            ["Properties"].__setitem__("TreatMissingData", "breaching")),
        ("event alarm: a dropped alarm is caught", lambda t: t["Resources"].pop("ReconcilerUnreadableEntriesAlarm")),
        ("deadline: STOP_DEADLINE_SECONDS missing on the reconciler is caught", lambda t: rec_env(t).pop("STOP_DEADLINE_SECONDS")),
        ("deadline: a fixed STOP_DEADLINE_SECONDS is caught", lambda t: fin_env(t).__setitem__("STOP_DEADLINE_SECONDS", "600")),
        ("deadline: below Fargate's stopTimeout is caught", lambda t: t["Parameters"]["StopDeadlineSeconds"]
            .__setitem__("MinValue", 60)),
        ("budget: no reserved concurrency on the finalizer is caught", lambda t: t["Resources"]["StopFinalizerFunction"]
            ["Properties"].pop("ReservedConcurrentExecutions")),
        ("budget: more reconcilers is caught", lambda t: t["Resources"][RECONCILER]["Properties"]
            .__setitem__("ReservedConcurrentExecutions", 3)),
        ("budget: the finalizer at the account's rate is caught", lambda t: fin_env(t).pop("ECS_STOP_RATE")),
        ("budget: the reads over the bucket are caught", lambda t: rec_env(t).__setitem__("ECS_READ_RATE", "10")),
        ("budget: no RunTask reserve is caught", lambda t: (fin_env(t).__setitem__("ECS_RUNTASK_RESERVE_PERCENT", "0"),
                                                            rec_env(t).__setitem__("ECS_RUNTASK_RESERVE_PERCENT", "0"))),
        ("dashboard: the reconciler's errors missing are caught", drop_dashboard_metric("${StopReconcilerFunction}")),
    ]


# The checks the mutations must trip, in the order they were reported.
CHECKS: list[Callable[[dict], None]] = [
    test_transform_and_globals,
    test_functions_are_the_rust_cargolambda_builds,
    test_iam_each_role_grants_exactly_the_allowed_statements,
    test_iam_worker_cluster_arns_accepts_only_exact_cluster_arns,
    test_local_switches_are_off_by_default,
    test_every_function_traces_and_logs_json_to_a_group_with_retention,
    test_environment_is_known_and_deadlines_fit_the_timeouts,
    test_run_table,
    test_stopping_runs_index,
    test_iam_reconciler_grants_exactly_its_statements,
    test_reconciler_schedule,
    test_every_function_reports_metrics_for_its_stack,
    test_stream_mapping,
    test_http_api,
    test_alarms,
    test_every_alarm_notifies_a_topic,
    test_alarm_topic_is_encrypted_with_a_key_cloudwatch_may_use,
    test_event_alarms,
    test_stop_deadline,
    test_ecs_rate_budget,
    test_stranded_stop_alarm,
    test_dashboard_shows_every_metric,
    test_outputs,
    test_authz_policy_parameter,
]
MUTATIONS = mutations()


@pytest.mark.parametrize("mutate", [m for _, m in MUTATIONS], ids=[name for name, _ in MUTATIONS])
def test_each_widening_mutation_is_caught(t: dict, mutate: Callable[[dict], None]) -> None:
    """The checks catch a widened template: each mutation (an extra or
    wildcard action, a widened resource, a dropped condition, the local auth
    switch, infinite retries, ...) must fail at least one of CHECKS."""
    try:
        mutate(t)
    except (KeyError, StopIteration, ValueError, IndexError) as e:
        pytest.fail(f"the mutation no longer applies to the template ({e!r}): update mutations()")
    caught = []
    for check in CHECKS:
        try:
            check(copy.deepcopy(t))
        except (CheckFailed, KeyError, TypeError, ValueError, StopIteration):
            caught.append(check.__name__)
    assert caught, "no check failed on the widened template"
