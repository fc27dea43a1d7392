"""template.yaml as data: the one way the tools read the SAM template.

Parsed with cfn-lint's decoder (in .venv through moto[server], and in
.venv-sam), which keeps !Ref / !GetAtt / !Sub as {"Ref": ...} /
{"Fn::GetAtt": [...]} / {"Fn::Sub": ...}; the result is plain dicts, lists and
strings. Used by the template assertions (tools/localdev/tests/test_template.py),
by the local stream mapping (localdev.stream_mapper), which takes its filter
from here, and by the local stack (localdev.aws), which creates its run
table with the template's keys and indexes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .common import ROOT

TEMPLATE = ROOT / "template.yaml"
# The function the run table's stream triggers, and its stream event.
FINALIZER = "StopFinalizerFunction"
# The run table.
RUNS_TABLE = "RunsTable"


class TemplateError(Exception):
    """The template cannot be read, or lacks what a tool needs from it."""


def plain(value: Any) -> Any:
    """cfn-lint's node classes -> plain dicts/lists/strings."""
    return json.loads(json.dumps(value, default=str))


def load(path: str | Path = TEMPLATE) -> dict:
    from cfnlint.decode import decode

    template, matches = decode(str(path))
    if matches or template is None:
        raise TemplateError(f"{path}: cannot parse: {[str(m) for m in matches]}")
    return plain(template)


def stream_filter_patterns(t: dict, function: str = FINALIZER) -> list[Any]:
    """The FilterCriteria patterns (decoded from their JSON) of `function`'s
    DynamoDB stream events, in the template's order."""
    fn = t.get("Resources", {}).get(function) or {}
    events = (fn.get("Properties") or {}).get("Events") or {}
    patterns = []
    for ev in events.values():
        if ev.get("Type") == "DynamoDB":
            for f in ((ev.get("Properties") or {}).get("FilterCriteria") or {}).get("Filters") or []:
                patterns.append(json.loads(f["Pattern"]))
    return patterns


def run_table_schema(t: dict) -> dict:
    """The run table's AttributeDefinitions, KeySchema and
    GlobalSecondaryIndexes (name, keys, projection), in the shape of
    DynamoDB's CreateTable."""
    table = t.get("Resources", {}).get(RUNS_TABLE) or {}
    if table.get("Type") != "AWS::DynamoDB::Table":
        raise TemplateError(f"{RUNS_TABLE} is not a DynamoDB table in the template")
    p = table.get("Properties") or {}
    try:
        return {
            "AttributeDefinitions": [
                {"AttributeName": a["AttributeName"], "AttributeType": a["AttributeType"]} for a in p["AttributeDefinitions"]
            ],
            "KeySchema": [{"AttributeName": k["AttributeName"], "KeyType": k["KeyType"]} for k in p["KeySchema"]],
            "GlobalSecondaryIndexes": [
                {"IndexName": g["IndexName"], "KeySchema": g["KeySchema"], "Projection": g["Projection"]}
                for g in p.get("GlobalSecondaryIndexes") or []
            ],
        }
    except (KeyError, TypeError) as e:
        raise TemplateError(f"{RUNS_TABLE}: cannot read its keys and indexes ({e!r})") from e
