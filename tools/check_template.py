#!/usr/bin/env python3
"""Assertions on template.yaml that linters cannot make.

    python tools/check_template.py [template.yaml]
    python tools/check_template.py --elf-aarch64 FILE...

The first form checks, one line per check:
  - IAM least privilege: each function role grants exactly the statements in
    ALLOWED below (actions, resources, conditions), nothing else: no wildcard
    actions, no managed policies, no SAM policy templates, no other policy
    resources. A later edit that widens a grant fails here, and the checker
    proves that on mutated copies of the template.
  - the stream event source mapping (filter, partial batch failures, bisect,
    finite retries and record age, parallelization, encrypted failure queue);
  - ALLOW_UNAUTHENTICATED_LOCAL appears nowhere in the template;
  - every function has active tracing, JSON logs into a log group with
    retention, the run table's settings, the API's IAM route, alarms, outputs,
    samconfig.toml.
It ends with `N passed, M failed` and exits 1 when anything failed.

The second form checks that each FILE is a 64-bit little-endian aarch64 ELF
executable (what `sam build` must produce for the arm64 functions) that needs
no glibc newer than provided.al2023's 2.34.

The template is parsed with cfn-lint's decoder, which keeps !Ref / !GetAtt /
!Sub as {"Ref": ...} / {"Fn::GetAtt": [...]} / {"Fn::Sub": ...}.
"""

from __future__ import annotations

import copy
import json
import os
import re
import struct
import sys
from pathlib import Path
from typing import Any, Callable

LOCAL_AUTH_VAR = "ALLOW_UNAUTHENTICATED_LOCAL"

# The functions, their binaries and their roles.
FUNCTIONS = {
    "RunApiFunction": {"binary": "run-api", "role": "RunApiRole", "log_group": "RunApiLogGroup"},
    "StopFinalizerFunction": {"binary": "stop-finalizer", "role": "StopFinalizerRole", "log_group": "StopFinalizerLogGroup"},
}


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
}

# Resources that grant permissions to principals other than the function roles
# are allowed only in these forms.
POLICY_TYPES = {"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::RolePolicy", "AWS::IAM::UserPolicy",
                "AWS::IAM::GroupPolicy", "AWS::IAM::User", "AWS::IAM::Group", "AWS::IAM::AccessKey",
                "AWS::IAM::InstanceProfile", "AWS::Serverless::Application"}

ENV_ALLOWED = {
    "RunApiFunction": {"RUNS_TABLE", "STOP_CONCURRENCY", "STOP_BUDGET_MS", "DEADLINE_MARGIN_MS", "SDK_MAX_ATTEMPTS",
                       "SDK_CONNECT_TIMEOUT_MS", "SDK_ATTEMPT_TIMEOUT_MS", "SDK_OPERATION_TIMEOUT_MS"},
    "StopFinalizerFunction": {"RUNS_TABLE", "FINALIZER_WAIT_MS", "FINALIZER_POLL_MS", "FINALIZER_POLL_MAX_MS",
                              "FINALIZER_RUN_CONCURRENCY", "STOP_CONCURRENCY", "DEADLINE_MARGIN_MS",
                              "SDK_MAX_ATTEMPTS", "SDK_CONNECT_TIMEOUT_MS", "SDK_ATTEMPT_TIMEOUT_MS",
                              "SDK_OPERATION_TIMEOUT_MS"},
}

STOPPING_FILTER = {"dynamodb": {"NewImage": {"Status": {"S": ["STOPPING"]}}}}


class CheckFailed(Exception):
    pass


def canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def plain(value: Any) -> Any:
    """cfn-lint's node classes -> plain dicts/lists/strings."""
    return json.loads(json.dumps(value, default=str))


def require(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def load_template(path: str) -> dict:
    from cfnlint.decode import decode  # from .venv-sam (cfn-lint)

    template, matches = decode(path)
    if matches or template is None:
        raise SystemExit(f"{path}: cannot parse: {[str(m) for m in matches]}")
    return plain(template)


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


# ------------------------------------------------------------------ IAM checks


def role_statements(t: dict, role: str) -> list[dict]:
    out = []
    for policy in props(t, role).get("Policies", []) or []:
        doc = policy.get("PolicyDocument", {})
        out.extend(as_list(doc.get("Statement", [])))
    return out


def check_role(t: dict, role: str) -> None:
    require(role in t.get("Resources", {}), f"role {role} missing")
    p = props(t, role)
    require(t["Resources"][role]["Type"] == "AWS::IAM::Role", f"{role} is not an AWS::IAM::Role")
    require(not p.get("ManagedPolicyArns"), f"{role}: managed policies are not allowed: {p.get('ManagedPolicyArns')}")
    require("PermissionsBoundary" not in p or p["PermissionsBoundary"], f"{role}: empty permissions boundary")
    trust = as_list(p.get("AssumeRolePolicyDocument", {}).get("Statement", []))
    require(len(trust) == 1, f"{role}: exactly one trust statement expected")
    require(trust[0].get("Principal") == {"Service": "lambda.amazonaws.com"}, f"{role}: trusted by {trust[0].get('Principal')}")
    require(trust[0].get("Action") == "sts:AssumeRole" and trust[0].get("Effect") == "Allow", f"{role}: bad trust statement")

    allowed = ALLOWED[role]
    covered: list[set[str]] = [set() for _ in allowed]
    for st in role_statements(t, role):
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


def check_iam(t: dict) -> None:
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


# --------------------------------------------------------------- other checks


def check_no_local_auth(t: dict) -> None:
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
    require(not hits, f"{LOCAL_AUTH_VAR} appears at {hits}")


def check_globals(t: dict) -> None:
    require(t.get("Transform") == "AWS::Serverless-2016-10-31", f"Transform is {t.get('Transform')}")
    g = t.get("Globals", {}).get("Function", {})
    require(g.get("Runtime") == "provided.al2023", f"Globals Runtime {g.get('Runtime')}")
    require(g.get("Architectures") == ["arm64"], f"Globals Architectures {g.get('Architectures')}")
    require(g.get("Handler") == "bootstrap", f"Globals Handler {g.get('Handler')}")
    require(g.get("Tracing") == "Active", f"Globals Tracing {g.get('Tracing')}")
    require((g.get("LoggingConfig") or {}).get("LogFormat") == "JSON", "Globals LoggingConfig.LogFormat must be JSON")
    require(isinstance(g.get("MemorySize"), int) and 128 <= g["MemorySize"] <= 3008, "Globals MemorySize 128..3008")
    require(isinstance(g.get("Timeout"), int) and 1 <= g["Timeout"] <= 900, "Globals Timeout 1..900")


def check_functions(t: dict) -> None:
    fns = resources(t, "AWS::Serverless::Function")
    require(set(fns) == set(FUNCTIONS), f"functions {sorted(fns)}, expected {sorted(FUNCTIONS)}")
    require(not resources(t, "AWS::Lambda::Function"), "plain AWS::Lambda::Function resources are not expected")
    for fn, spec in FUNCTIONS.items():
        meta = t["Resources"][fn].get("Metadata", {})
        require(meta.get("BuildMethod") == "rust-cargolambda", f"{fn}: BuildMethod {meta.get('BuildMethod')}")
        require((meta.get("BuildProperties") or {}).get("Binary") == spec["binary"], f"{fn}: Binary must be {spec['binary']}")
        require(effective(t, fn, "Architectures") == ["arm64"], f"{fn}: arm64 expected")
        require(effective(t, fn, "Runtime") == "provided.al2023", f"{fn}: provided.al2023 expected")


def check_tracing_and_logging(t: dict) -> None:
    for fn, spec in FUNCTIONS.items():
        require(effective(t, fn, "Tracing") == "Active", f"{fn}: Tracing is {effective(t, fn, 'Tracing')}")
        logging = effective_logging(t, fn)
        require(logging.get("LogFormat") == "JSON", f"{fn}: LogFormat {logging.get('LogFormat')}")
        require(logging.get("LogGroup") == {"Ref": spec["log_group"]}, f"{fn}: LoggingConfig.LogGroup must be !Ref {spec['log_group']}")
        group = t["Resources"].get(spec["log_group"], {})
        require(group.get("Type") == "AWS::Logs::LogGroup", f"{spec['log_group']} is not a log group")
        require(group.get("Properties", {}).get("RetentionInDays") is not None, f"{spec['log_group']}: no retention")


def check_environment(t: dict) -> None:
    for fn, allowed in ENV_ALLOWED.items():
        env = effective_env(t, fn)
        require(env.get("RUNS_TABLE") == {"Ref": "RunsTable"}, f"{fn}: RUNS_TABLE must be !Ref RunsTable")
        extra = set(env) - allowed
        require(not extra, f"{fn}: unexpected environment {sorted(extra)}")
        for k, v in env.items():
            if k != "RUNS_TABLE":
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


def check_table(t: dict) -> None:
    p = props(t, "RunsTable")
    require(t["Resources"]["RunsTable"]["Type"] == "AWS::DynamoDB::Table", "RunsTable is not a DynamoDB table")
    require(p.get("BillingMode") == "PAY_PER_REQUEST", "on-demand billing expected")
    keys = {k["AttributeName"]: k["KeyType"] for k in p.get("KeySchema", [])}
    require(keys == {"WorkflowArn": "HASH", "RunId": "RANGE"}, f"key schema {keys}")
    attrs = {a["AttributeName"]: a["AttributeType"] for a in p.get("AttributeDefinitions", [])}
    require(attrs == {"WorkflowArn": "S", "RunId": "S"}, f"attribute definitions {attrs}")
    require(p.get("StreamSpecification", {}).get("StreamViewType") == "NEW_AND_OLD_IMAGES", "stream NEW_AND_OLD_IMAGES expected")
    require(p.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled") is True, "PITR expected")
    require(p.get("SSESpecification", {}).get("SSEEnabled") is True, "SSE (KMS) expected")
    dp = p.get("DeletionProtectionEnabled")
    require(dp == {"Fn::If": ["ProtectTable", True, False]}, f"DeletionProtectionEnabled {dp}")
    param = t["Parameters"]["TableDeletionProtection"]
    require(param.get("Default") == "true", "deletion protection must default to on")
    require(t["Conditions"]["ProtectTable"] == {"Fn::Equals": [{"Ref": "TableDeletionProtection"}, "true"]}, "ProtectTable condition")


def check_worker_clusters_param(t: dict) -> None:
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


def check_stream_mapping(t: dict) -> None:
    p = stream_event(t)
    require(p.get("Stream") == getatt("RunsTable", "StreamArn"), "Stream must be !GetAtt RunsTable.StreamArn")
    require(p.get("FunctionResponseTypes") == ["ReportBatchItemFailures"], "FunctionResponseTypes [ReportBatchItemFailures]")
    require(p.get("BisectBatchOnFunctionError") is True, "BisectBatchOnFunctionError: true expected")
    lo, hi = param_bounds(t, p.get("MaximumRetryAttempts", -1))
    require(0 <= lo and hi <= 100, f"MaximumRetryAttempts must be finite (0..100), can be {lo}..{hi}")
    lo, hi = param_bounds(t, p.get("MaximumRecordAgeInSeconds", -1))
    require(60 <= lo and hi <= 86_400, f"MaximumRecordAgeInSeconds must be finite (60..86400), can be {lo}..{hi}")
    require(isinstance(p.get("ParallelizationFactor"), int) and p["ParallelizationFactor"] > 1,
            "ParallelizationFactor > 1 expected (one slow run must not hold up a shard)")
    filters = (p.get("FilterCriteria") or {}).get("Filters") or []
    require(len(filters) == 1, "exactly one filter expected")
    require(json.loads(filters[0]["Pattern"]) == STOPPING_FILTER, f"filter {filters[0]['Pattern']}")
    on_failure = ((p.get("DestinationConfig") or {}).get("OnFailure") or {})
    require(on_failure.get("Type") == "SQS", "OnFailure destination must be SQS")
    dest = on_failure.get("Destination")
    require(dest == getatt("FinalizerFailureQueue", "Arn"), f"OnFailure destination {dest}")
    q = props(t, "FinalizerFailureQueue")
    require(q.get("KmsMasterKeyId") or q.get("SqsManagedSseEnabled") is True, "the failure queue must be encrypted")


def check_http_api(t: dict) -> None:
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


def check_alarms(t: dict) -> None:
    alarms = [a.get("Properties", {}) for a in resources(t, "AWS::CloudWatch::Alarm").values()]

    def has(namespace: str, metric: str, dim: str, value: Any) -> bool:
        return any(a.get("Namespace") == namespace and a.get("MetricName") == metric
                   and {"Name": dim, "Value": value} in (a.get("Dimensions") or []) for a in alarms)

    require(has("AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", getatt("FinalizerFailureQueue", "QueueName")),
            "alarm on messages in the failure queue")
    for fn in FUNCTIONS:
        for metric in ("Errors", "Throttles"):
            require(has("AWS/Lambda", metric, "FunctionName", {"Ref": fn}), f"alarm on {fn} {metric}")
    require(has("AWS/ApiGateway", "5xx", "ApiId", {"Ref": "HttpApi"}), "alarm on API 5xx")
    topic = {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}
    for a in alarms:
        require(a.get("AlarmActions") == topic, f"alarm {a.get('MetricName')}: AlarmActions must use the optional topic")
    require(t["Parameters"]["AlarmTopicArn"].get("Default") == "", "AlarmTopicArn is optional")


def check_outputs(t: dict) -> None:
    outs = t.get("Outputs", {})
    for name in ("ApiUrl", "RunsTableName", "FailureQueueUrl"):
        require(name in outs, f"output {name} missing")
    require(outs["RunsTableName"]["Value"] == {"Ref": "RunsTable"}, "RunsTableName")
    require(outs["FailureQueueUrl"]["Value"] == {"Ref": "FinalizerFailureQueue"}, "FailureQueueUrl")
    require("${HttpApi}.execute-api." in canon(outs["ApiUrl"]["Value"]), "ApiUrl")


def check_samconfig(path: Path) -> None:
    import tomllib

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

    def set_global_env(t: dict) -> None:
        t["Globals"]["Function"]["Environment"] = {"Variables": {LOCAL_AUTH_VAR: "false"}}

    def stream(t: dict) -> dict:
        return t["Resources"]["StopFinalizerFunction"]["Properties"]["Events"]["RunTableStream"]["Properties"]

    return [
        ("IAM: an extra action (dynamodb:Scan) is caught", add_action("RunApiRole", "dynamodb:Scan")),
        ("IAM: a wildcard action (dynamodb:*) is caught", add_action("StopFinalizerRole", "dynamodb:*")),
        ("IAM: the finalizer's actions on the API role are caught", add_action("RunApiRole", "ecs:ListTasks")),
        ("IAM: the table resource widened to * is caught", set_resource("RunApiRole", "RunTable", "*")),
        ("IAM: the table's indexes added is caught", set_resource("RunApiRole", "RunTable", [
            getatt("RunsTable", "Arn"), sub("${RunsTable.Arn}/index/*")])),
        ("IAM: a dropped ecs:cluster condition is caught", drop_condition("RunApiRole", "StopWorkerTasks")),
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
        ("stream: infinite retries (-1) are caught", lambda t: stream(t).__setitem__("MaximumRetryAttempts", -1)),
        ("stream: no bisect is caught", lambda t: stream(t).__setitem__("BisectBatchOnFunctionError", False)),
        ("stream: another filter is caught", lambda t: stream(t)["FilterCriteria"]["Filters"][0].__setitem__(
            "Pattern", '{"dynamodb": {"NewImage": {"Status": {"S": ["STOPPED"]}}}}')),
        ("tracing off on a function is caught", lambda t: t["Resources"]["StopFinalizerFunction"]["Properties"]
            .__setitem__("Tracing", "PassThrough")),
    ]


# ------------------------------------------------------------------------ main


def run_template_checks(path: str) -> int:
    t = load_template(path)
    checks: list[tuple[str, Callable[[dict], None]]] = [
        ("Transform and Globals (provided.al2023, arm64, bootstrap, Tracing Active, JSON logs)", check_globals),
        ("functions: rust-cargolambda builds of run-api and stop-finalizer", check_functions),
        ("IAM: each role grants exactly the allowed statements, nothing else", check_iam),
        ("IAM: WorkerClusterArns accepts only exact cluster ARNs (no wildcards)", check_worker_clusters_param),
        (f"{LOCAL_AUTH_VAR} is never set", check_no_local_auth),
        ("every function: Tracing Active, JSON logs to a log group with retention", check_tracing_and_logging),
        ("environment: known variables, deadlines fit the function timeouts", check_environment),
        ("run table: on-demand, keys, NEW_AND_OLD_IMAGES stream, PITR, SSE, deletion protection on by default", check_table),
        ("stream mapping: STOPPING filter, batch item failures, bisect, finite retries/age, parallelization, encrypted OnFailure queue", check_stream_mapping),
        ("HTTP API: POST / with AWS_IAM, payload 2.0, throttling parameters, access logs with retention", check_http_api),
        ("alarms: failure queue, function errors and throttles, API 5xx, optional SNS topic", check_alarms),
        ("outputs: ApiUrl, RunsTableName, FailureQueueUrl", check_outputs),
    ]
    passed = failed = 0

    def report(ok: bool, name: str, detail: str = "") -> None:
        nonlocal passed, failed
        if ok:
            passed += 1
            print(f"ok    {name}")
        else:
            failed += 1
            print(f"FAIL  {name}: {detail}")

    for name, fn in checks:
        try:
            fn(copy.deepcopy(t))
            report(True, name)
        except (CheckFailed, KeyError, TypeError, ValueError, StopIteration) as e:
            report(False, name, f"{type(e).__name__}: {e}" if not isinstance(e, CheckFailed) else str(e))

    samconfig = Path(path).resolve().parent / "samconfig.toml"
    try:
        check_samconfig(samconfig)
        report(True, "samconfig.toml: beta features for the Rust build, CAPABILITY_IAM, changeset confirmation")
    except (CheckFailed, KeyError, ValueError) as e:
        report(False, "samconfig.toml", str(e))

    # The checks must catch a widened template: each mutation must fail at
    # least one of them.
    for name, mutate in mutations():
        m = copy.deepcopy(t)
        try:
            mutate(m)
        except (KeyError, StopIteration, ValueError, IndexError) as e:
            report(False, name, f"the mutation no longer applies to the template ({e!r}): update mutations()")
            continue
        caught = []
        for check_name, fn in checks:
            try:
                fn(copy.deepcopy(m))
            except (CheckFailed, KeyError, TypeError, ValueError, StopIteration):
                caught.append(check_name)
        report(bool(caught), name, "no check failed on the widened template")

    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


EM_AARCH64 = 183
AL2023_GLIBC = (2, 34)


def max_glibc(path: str) -> tuple[int, int]:
    """The newest GLIBC_x.y symbol version the binary names (its version needs)."""
    data = Path(path).read_bytes()
    found = [(int(a), int(b)) for a, b in re.findall(rb"GLIBC_(\d+)\.(\d+)", data)]
    return max(found, default=(0, 0))


def check_elf_aarch64(paths: list[str]) -> int:
    passed = failed = 0
    for p in paths:
        try:
            with open(p, "rb") as f:
                head = f.read(64)
            problems = []
            if head[:4] != b"\x7fELF":
                problems.append("not an ELF file")
            else:
                if head[4] != 2:
                    problems.append("not 64-bit")
                if head[5] != 1:
                    problems.append("not little-endian")
                e_type, e_machine = struct.unpack_from("<HH", head, 16)
                if e_machine != EM_AARCH64:
                    problems.append(f"machine {e_machine}, not aarch64 ({EM_AARCH64})")
                if e_type not in (2, 3):  # ET_EXEC, or ET_DYN for a PIE
                    problems.append(f"ELF type {e_type} is not an executable")
            if not os.access(p, os.X_OK):
                problems.append("not executable (mode)")
            glibc = max_glibc(p)
            if glibc > AL2023_GLIBC:
                problems.append(f"needs GLIBC_{glibc[0]}.{glibc[1]}, provided.al2023 has {AL2023_GLIBC[0]}.{AL2023_GLIBC[1]}")
        except OSError as e:
            problems = [str(e)]
        if problems:
            failed += 1
            print(f"FAIL  {p}: {', '.join(problems)}")
        else:
            passed += 1
            g = max_glibc(p)
            print(f"ok    {p}: aarch64 ELF executable, needs GLIBC {g[0]}.{g[1]} ({os.path.getsize(p)} bytes)")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or not paths else 0


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--elf-aarch64":
        return check_elf_aarch64(argv[1:])
    if argv and argv[0].startswith("-"):
        print(__doc__)
        return 2
    return run_template_checks(argv[0] if argv else "template.yaml")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
