"""docs/performance.md cannot drift from `make bench`'s results
(localdev.perfdoc). Run by `make test` through `make pytest`.

- the file is exactly what `python -m localdev.perfdoc` would write from
  bench/results/latest.json (and lambda_cpu.json): a new bench run, or a hand
  edit inside a generated block, fails here until the generator is run;
- the file's blocks and the generator's are the same set, each once;
- a changed figure in the JSON changes the doc (the check is not vacuous);
- template.yaml and ARCHITECTURE.md quote no measured figure that belongs in
  docs/performance.md (they point to it instead).
"""

from __future__ import annotations

import copy
import json
import re

import pytest

from localdev import perfdoc
from localdev.common import ROOT


def test_performance_doc_is_up_to_date_with_the_bench_json():
    current, expected = perfdoc.expected()
    assert current == expected, (
        "docs/performance.md is out of date with bench/results/*.json: run "
        "`.venv/bin/python -m localdev.perfdoc` and commit the result"
    )


def test_every_block_is_generated_once():
    names = [m.group("name") for m in perfdoc.BLOCK.finditer(perfdoc.DOC.read_text())]
    assert sorted(names) == sorted(perfdoc.BLOCKS)


def test_a_changed_measurement_changes_the_doc():
    latest = json.loads(perfdoc.LATEST.read_text())
    doc = perfdoc.DOC.read_text()
    before = perfdoc.render(doc, latest, perfdoc.load_json(perfdoc.LAMBDA_CPU))
    changed = copy.deepcopy(latest)
    changed["stop_latency"][-1]["p50_ms"] += 7.0
    changed["throttled"][0]["throttled_calls"] += 3
    after = perfdoc.render(doc, changed, perfdoc.load_json(perfdoc.LAMBDA_CPU))
    assert before != after


def test_a_hand_edit_inside_a_block_is_caught():
    latest = json.loads(perfdoc.LATEST.read_text())
    doc = perfdoc.render(perfdoc.DOC.read_text(), latest, perfdoc.load_json(perfdoc.LAMBDA_CPU))
    edited = doc.replace("<!-- perfdoc:end run -->", "(edited by hand)\n<!-- perfdoc:end run -->", 1)
    assert perfdoc.render(edited, latest, None) != edited


@pytest.mark.parametrize("mutation", ["drop", "unknown", "twice"])
def test_missing_unknown_or_repeated_blocks_are_refused(mutation):
    doc = perfdoc.DOC.read_text()
    if mutation == "drop":
        doc = re.sub(r"<!-- perfdoc:begin rest -->.*?<!-- perfdoc:end rest -->", "", doc, flags=re.S)
    elif mutation == "unknown":
        doc += "\n<!-- perfdoc:begin bogus -->\n<!-- perfdoc:end bogus -->\n"
    else:
        doc += "\n<!-- perfdoc:begin run -->\n<!-- perfdoc:end run -->\n"
    with pytest.raises(perfdoc.PerfDocError):
        perfdoc.render(doc, json.loads(perfdoc.LATEST.read_text()), None)


def test_the_deployed_tables_read_only_the_deployed_https_rows():
    """Section 7's tables (lambda-cpu, memory-size, targets) read the HTTPS
    rows of the product as deployed (direct StopTask, no connection bound,
    nothing opened at init, the `http/1.1`-only responder); the variants a
    run adds beside them (the `h2` responder, the SDK path, bounds) change
    nothing there, and section 8 shows its wires in a column of their own."""
    latest = json.loads(perfdoc.LATEST.read_text())
    doc = perfdoc.DOC.read_text()
    before = perfdoc.render(doc, latest, None)
    varied = copy.deepcopy(latest)
    for key in ("stop_latency_lambda_cpu", "cold_start_lambda_cpu"):
        # The deployed rows (a run before the wires has no wire key: http/1.1).
        rows = perfdoc._https(varied[key])
        for change in ({"wire": "h2"}, {"path": "sdk"}, {"max_connections_per_host": 16}, {"connections_at_init": 100}):
            for r in rows:
                variant = dict(r, **change)
                for field in ("p50_ms", "p50_ratio", "first_invoke_ms", "gb_s_per_stop_p50", "cpu_ms_per_stop"):
                    if field in variant:
                        variant[field] *= 3
                varied[key].append(variant)
    assert perfdoc.block_lambda_cpu(varied, None) == perfdoc.block_lambda_cpu(latest, None)
    assert perfdoc.block_memory_size(varied, None) == perfdoc.block_memory_size(latest, None)
    assert perfdoc.block_targets(varied, None) == perfdoc.block_targets(latest, None)
    # A run of one wire (as before the wires): no wire column.
    plain = [{k: v for k, v in r.items() if k != "wire"} for r in latest["throttled"] if r.get("wire", "http") == "http"]
    assert "| wire |" not in perfdoc.block_throttled(dict(latest, throttled=plain), None)
    wired = copy.deepcopy(latest)
    wired["throttled"] = [dict(r, wire=w) for w in ("http", "h2", "http1") for r in plain]
    table = perfdoc.block_throttled(wired, None)
    assert table.startswith("| wire |") and "| HTTPS h2 |" in table and "| HTTPS http/1.1 |" in table
    assert perfdoc.render(doc, latest, None) == before


# Measured figures that once sat in these files and went stale: a duration in
# ms or µs with a fraction or a ~, MiB sizes, GB-s costs, "N x the floor".
STALE = re.compile(
    r"~\s?\d+(\.\d+)?\s?(ms|µs|us)\b|\b\d+\.\d+\s?(ms|µs)\b|\b\d+(\.\d+)?\s?MiB\b|GB-s per|\d\s?[x×] (its|the) (two-round-trip )?floor"
)


@pytest.mark.parametrize("path", ["template.yaml", "ARCHITECTURE.md"])
def test_no_measured_figures_outside_the_performance_doc(path):
    text = (ROOT / path).read_text()
    lines = [f"{path}:{i}: {line.strip()}" for i, line in enumerate(text.splitlines(), 1) if STALE.search(line)]
    assert not lines, "measured figures belong in docs/performance.md (point to it instead):\n" + "\n".join(lines)
