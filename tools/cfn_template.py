"""template.yaml as data: the one way the tools read the SAM template.

Parsed with cfn-lint's decoder (in .venv through moto[server], and in
.venv-sam), which keeps !Ref / !GetAtt / !Sub as {"Ref": ...} /
{"Fn::GetAtt": [...]} / {"Fn::Sub": ...}; the result is plain dicts, lists and
strings. Used by the template assertions (tools/test_template.py) and by the
local stream mapping (tools/stream_mapper.py), which takes its filter from here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
# The function the run table's stream triggers, and its stream event.
FINALIZER = "StopFinalizerFunction"


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
