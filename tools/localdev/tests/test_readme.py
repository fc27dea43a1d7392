"""The README's lists of functions, parameters and outputs are template.yaml's,
exactly (nothing missing, nothing extra). Run by `make test` through `make pytest`.

The README convention (one table each, found by its header's first cell):

    | function | template resource | ... |      `run-api` | `RunApiFunction`: the binary
    | parameter | default | meaning |         `WorkerClusterArns`
    | output | use |                          `ApiUrl`

The first cell of each row names one or more items, each in backticks,
separated by commas; other columns are free text. Compared with the
template (read by localdev.cfn_template):

  - functions: every `AWS::Serverless::Function` resource, as its binary
    (Metadata.BuildProperties.Binary, the name the functions go by) and as
    its logical id (the table's second column), pairwise;
  - parameters: the template's Parameters;
  - outputs: the template's Outputs;
  - a count in words ("four AWS Lambda functions") matches the functions.

docs/deploy.md's parameter and output tables follow the same convention and
are checked too. The tests at the bottom mutate the README in memory
(a row removed, a bogus row added, a function renamed) and require each
mutation to be caught.
"""

from __future__ import annotations

import re

import pytest

from localdev import cfn_template
from localdev.common import ROOT

README = ROOT / "README.md"
DEPLOY = ROOT / "docs" / "deploy.md"
NAME = re.compile(r"`([A-Za-z][A-Za-z0-9_-]*)`")
NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8}


class ReadmeError(Exception):
    pass


def tables(text: str) -> list[list[list[str]]]:
    """Every markdown table of `text` (outside code fences) as rows of cells,
    header first, the separator row dropped."""
    out, current, fenced = [], [], False
    for line in text.splitlines() + [""]:
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if not fenced and line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(re.fullmatch(r":?-{3,}:?", c) for c in cells):
                current.append(cells)
        elif current:
            out.append(current)
            current = []
    return out


def table(text: str, first_header: str) -> list[list[str]]:
    """The body rows of the one table whose header starts with `first_header`."""
    found = [t for t in tables(text) if t[0][0].lower() == first_header]
    if len(found) != 1:
        raise ReadmeError(f"expected one table whose header starts with '{first_header}', found {len(found)}")
    return found[0][1:]


def names(cell: str) -> list[str]:
    """The backticked names of a first cell: `A` or `A`, `B`; anything else is refused."""
    parts = [p.strip() for p in cell.split(",")]
    out = []
    for p in parts:
        m = NAME.fullmatch(p)
        if not m:
            raise ReadmeError(f"first cell {cell!r}: each item must be one name in backticks")
        out.append(m.group(1))
    return out


def listed(text: str, first_header: str) -> list[str]:
    return [n for row in table(text, first_header) for n in names(row[0])]


def template_functions(t: dict) -> dict[str, str]:
    """binary -> logical id of every AWS::Serverless::Function."""
    out = {}
    for logical, res in t["Resources"].items():
        if res.get("Type") == "AWS::Serverless::Function":
            binary = ((res.get("Metadata") or {}).get("BuildProperties") or {}).get("Binary")
            assert binary, f"{logical} has no Metadata.BuildProperties.Binary"
            out[binary] = logical
    return out


def readme_functions(text: str) -> dict[str, str]:
    out = {}
    for row in table(text, "function"):
        (binary,) = names(row[0])
        (logical,) = names(row[1])
        if binary in out:
            raise ReadmeError(f"function {binary} listed twice")
        out[binary] = logical
    return out


def diff(what: str, documented: list[str], actual) -> list[str]:
    problems = []
    missing = sorted(set(actual) - set(documented))
    extra = sorted(set(documented) - set(actual))
    twice = sorted({n for n in documented if documented.count(n) > 1})
    if missing:
        problems.append(f"{what} in template.yaml but not in the doc: {missing}")
    if extra:
        problems.append(f"{what} in the doc but not in template.yaml: {extra}")
    if twice:
        problems.append(f"{what} listed twice: {twice}")
    return problems


def readme_problems(text: str, t: dict) -> list[str]:
    """Everything in which the README's lists differ from the template."""
    problems = []
    try:
        fns = template_functions(t)
        documented = readme_functions(text)
        problems += diff("functions", list(documented), fns)
        for binary, logical in documented.items():
            if binary in fns and fns[binary] != logical:
                problems.append(f"function {binary} is {fns[binary]} in template.yaml, {logical} in the doc")
        for m in re.finditer(r"\b(" + "|".join(NUMBERS) + r")\s+(?:AWS\s+)?Lambda\s+functions\b", text, re.I):
            if NUMBERS[m.group(1).lower()] != len(fns):
                problems.append(f"the doc says {m.group(0)!r}; template.yaml has {len(fns)}")
        problems += diff("parameters", listed(text, "parameter"), t.get("Parameters", {}))
        problems += diff("outputs", listed(text, "output"), t.get("Outputs", {}))
    except ReadmeError as e:
        problems.append(str(e))
    return problems


@pytest.fixture(scope="module")
def template() -> dict:
    return cfn_template.load()


def test_readme_lists_equal_the_template(template):
    problems = readme_problems(README.read_text(), template)
    assert not problems, "README.md differs from template.yaml:\n" + "\n".join(problems)


def test_deploy_doc_parameters_and_outputs_equal_the_template(template):
    text = DEPLOY.read_text()
    problems = diff("parameters", listed(text, "parameter"), template["Parameters"])
    problems += diff("outputs", listed(text, "output"), template["Outputs"])
    assert not problems, "docs/deploy.md differs from template.yaml:\n" + "\n".join(problems)


def test_the_readme_names_four_functions(template):
    # The issue that asked for this check: the README said "two" of three.
    assert len(template_functions(template)) == 4
    assert sorted(readme_functions(README.read_text())) == ["run-api", "run-events", "stop-finalizer", "stop-reconciler"]


# ------------------------------------------------- the check catches drift


def _drop_row(text: str, first_cell: str) -> str:
    out = re.sub(r"(?m)^\| " + re.escape(first_cell) + r" \|.*\n", "", text, count=1)
    assert out != text, first_cell
    return out


def _add_row_after(text: str, first_cell: str, row: str) -> str:
    out = re.sub(r"(?m)^(\| " + re.escape(first_cell) + r" \|.*\n)", lambda m: m.group(1) + row + "\n", text, count=1)
    assert out != text, first_cell
    return out


MUTATIONS = {
    "parameter row removed": lambda s: _drop_row(s, "`AlarmEmail`"),
    "bogus parameter added": lambda s: _add_row_after(s, "`AlarmEmail`", "| `BogusParameter` | 1 | not in the template |"),
    "output row removed": lambda s: _drop_row(s, "`StopDashboardName`"),
    "bogus output added": lambda s: _add_row_after(s, "`ApiUrl`", "| `BogusOutput` | not in the template |"),
    "function row removed": lambda s: _drop_row(s, "`stop-reconciler`"),
    "bogus function added": lambda s: _add_row_after(s, "`run-api`", "| `stop-everything` | `StopEverythingFunction` | x | y |"),
    "function with the wrong resource": lambda s: s.replace("| `run-api` | `RunApiFunction` |", "| `run-api` | `ApiFunction` |", 1),
    "parameter listed twice": lambda s: _add_row_after(s, "`AlarmEmail`", "| `AlarmEmail` | empty | again |"),
    "parameter name without backticks": lambda s: s.replace("| `AlarmEmail` |", "| AlarmEmail |", 1),
    "a wrong count in words": lambda s: s.replace("as four AWS Lambda functions", "as three AWS Lambda functions", 1),
    "the outputs table gone": lambda s: s.replace("| output | use |", "| result | use |", 1),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_each_drift_of_the_readme_is_caught(template, name):
    text = README.read_text()
    mutated = MUTATIONS[name](text)
    assert mutated != text, f"mutation '{name}' did not apply: the README changed shape, update the mutation"
    assert readme_problems(mutated, template), f"mutation '{name}' was not caught"


def test_a_parameter_added_to_the_template_alone_is_caught(template):
    import copy

    t = copy.deepcopy(template)
    t["Parameters"]["NewParameter"] = {"Type": "String", "Default": ""}
    t["Outputs"]["NewOutput"] = {"Value": "x"}
    problems = readme_problems(README.read_text(), t)
    assert any("NewParameter" in p for p in problems) and any("NewOutput" in p for p in problems)
