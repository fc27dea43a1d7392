"""docs/performance.md's measured figures, generated from `make bench`'s JSON.

    python -m localdev.perfdoc           rewrite the generated blocks of docs/performance.md
    python -m localdev.perfdoc --check   exit 1 (and say which block) when they are out of date

The figures come from bench/results/latest.json (the whole `make bench` run)
and, when present, bench/results/lambda_cpu.json (a run of section 7 alone,
`--lambda-cpu-only`). Each block sits between

    <!-- perfdoc:begin NAME -->
    ...generated...
    <!-- perfdoc:end NAME -->

and is replaced whole; the prose around the blocks is hand-written and kept.
A block in the file that this module does not generate, or one it generates
that the file lacks, is an error: the two are kept in step by
tools/localdev/tests/test_perfdoc.py (run by `make test`), which fails when the
file differs from what this module would write. `make bench` runs it after
the measurements, so a new run updates the doc.

Standard library only.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Callable, Optional

from .common import ROOT

DOC = ROOT / "docs" / "performance.md"
LATEST = ROOT / "bench" / "results" / "latest.json"
LAMBDA_CPU = ROOT / "bench" / "results" / "lambda_cpu.json"

BLOCK = re.compile(
    r"(?P<begin><!-- perfdoc:begin (?P<name>[a-z0-9-]+) -->\n)(?P<body>.*?)(?P<end><!-- perfdoc:end (?P=name) -->)",
    re.S,
)
# The targets of `make bench` (numbers, never a pass/fail of `make test`).
TARGET_DEPLOYED = 1.5  # p50 / floor at the deployed MemorySize, over HTTPS
TARGET_FULL_VCPU = 1.15  # p50 / floor at a full vCPU, in process
# Lambda: one vCPU at 1,769 MB.
FULL_VCPU_MB = 1769
# bench/responder.rs's wires.
WIRE_LABELS = {"http": "HTTP", "h2": "HTTPS h2", "http1": "HTTPS http/1.1"}


class PerfDocError(Exception):
    """The JSON or the doc lacks what a block needs."""


def _mib(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:.1f} MiB"


def _kib_mib(kib: float) -> str:
    return f"{kib / 1024:.1f} MiB"


def _n(x: float, digits: int = 2) -> str:
    return f"{x:,.{digits}f}"


def _table(header: list[str], align: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ blocks


def block_run(d: dict, _lc: Optional[dict]) -> str:
    return (
        f"`make bench` of {d['date']}, {d['machine']}; injected service latency "
        f"D = {d['service_latency_ms']:g} ms (`bench/results/latest.json`, `.md`).\n"
    )


def _latency_rows(rows: list[dict]) -> list[list[str]]:
    out = []
    for r in rows:
        out.append(
            [
                str(r["workers"]),
                _n(r["p50_ms"]),
                _n(r["p99_ms"]),
                _n(r["injected_d_ms"], 3),
                _n(r["physical_floor_ms"], 1),
                _n(r["p50_physical_ratio"], 3),
                _n(r["p99_physical_ratio"], 3),
                f"{r['dynamodb_requests']} + {r['ecs_requests']}",
                _n(r["bench_cpu_per_stop_ms"]),
            ]
        )
    return out


_LATENCY_HEADER = [
    "workers N",
    "p50 ms",
    "p99 ms",
    "injected D ms",
    "physical floor ms",
    "p50 / floor",
    "p99 / floor",
    "requests (DynamoDB + ECS)",
    "bench CPU per stop ms",
]
_LATENCY_ALIGN = ["---:"] * 7 + ["---"] + ["---:"]


def block_in_process(d: dict, _lc: Optional[dict]) -> str:
    return _table(_LATENCY_HEADER, _LATENCY_ALIGN, _latency_rows(d["stop_latency"]))


def block_via_runtime(d: dict, _lc: Optional[dict]) -> str:
    return _table(_LATENCY_HEADER, _LATENCY_ALIGN, _latency_rows(d["stop_latency_via_runtime"]))


def _https(rows: list[dict]) -> list[dict]:
    """Section 7's HTTPS rows of the product as deployed: the direct
    StopTask path, no connection bound, nothing opened at init, against the
    responder offering `http/1.1` only (whether ECS offers `h2` cannot be
    checked; bench/results/latest.md has the `h2` rows and the variants
    beside them). Rows of runs before those settings have no such keys and
    were all of this kind."""
    return [
        r
        for r in rows
        if r["tls"]
        and r.get("wire", "http1") == "http1"
        and r.get("path", "direct") == "direct"
        and not r.get("max_connections_per_host")
        and not r.get("connections_at_init")
    ]


def _memory_columns(rows: list[dict]) -> list[int]:
    """The memory sizes measured over HTTPS, largest first."""
    return sorted({r["memory_mb"] for r in rows if r["tls"]}, reverse=True)


def _lambda_cpu_table(section: dict) -> str:
    warm = _https(section["stop_latency_lambda_cpu"])
    cold = _https(section.get("cold_start_lambda_cpu", []))
    mems = _memory_columns(warm)
    if not mems:
        raise PerfDocError("no HTTPS rows in stop_latency_lambda_cpu")
    by = {(r["memory_mb"], r["workers"]): r for r in warm}
    cold_by = {(r["memory_mb"], r["workers"]): r for r in cold}
    workers = sorted({r["workers"] for r in warm if r["workers"] > 0})
    deployed = _deployed_memory()
    header = ["workers N"] + [f"{m:,} MB" + (" (deployed)" if m == deployed else "") for m in mems]
    rows = []
    for n in workers:
        cells = [str(n)]
        for m in mems:
            r = by.get((m, n))
            cells.append(f"{r['p50_ms']:.1f} ({r['p50_ratio']:.2f})" if r else "—")
        rows.append(cells)
    for n in sorted({r["workers"] for r in cold}):
        cells = [f"{n}, cold (first invoke)"]
        for m in mems:
            r = cold_by.get((m, n))
            cells.append(f"{r['first_invoke_ms']:.0f}" if r else "—")
        rows.append(cells)
    top = max(workers)
    cells = [f"CPU ms per warm {top}-worker stop"]
    for m in mems:
        r = by.get((m, top))
        cells.append(f"{r['cpu_ms_per_stop']:.1f}" if r else "—")
    rows.append(cells)
    return _table(header, ["---:"] * len(header), rows)


def block_lambda_cpu(d: dict, _lc: Optional[dict]) -> str:
    return _lambda_cpu_table(d)


def block_lambda_cpu_alone(_d: dict, lc: Optional[dict]) -> str:
    if lc is None:
        return "(no `bench/results/lambda_cpu.json`: run `target/release/examples/bench --lambda-cpu-only`.)\n"
    return _lambda_cpu_table(lc)


def _deployed_memory() -> Optional[int]:
    """run-api's MemorySize in template.yaml (a plain read: no YAML parser
    needed, and none of this module's callers has to have cfn-lint)."""
    text = (ROOT / "template.yaml").read_text()
    m = re.search(r"\n  RunApiFunction:\n(?:    .*\n|\s*\n)*?      MemorySize: (\d+)\n", text)
    return int(m.group(1)) if m else None


def block_memory_size(d: dict, _lc: Optional[dict]) -> str:
    """The MemorySize arithmetic: per size (HTTPS, warm p50), the largest
    stop's p50 / floor and GB-s, the 1-worker stop's GB-s, and which size is
    the smallest within the deployed target and the cheapest per large stop."""
    warm = _https(d["stop_latency_lambda_cpu"])
    mems = sorted(_memory_columns(warm))
    by = {(r["memory_mb"], r["workers"]): r for r in warm}
    top = max(r["workers"] for r in warm)
    rows = []
    for m in mems:
        big, one = by.get((m, top)), by.get((m, 1))
        rows.append(
            [
                f"{m:,}",
                f"{min(m / FULL_VCPU_MB, 1.0):.2f}",
                f"{big['p50_ratio']:.2f}" if big else "—",
                f"{big['gb_s_per_stop_p50']:.3f}" if big else "—",
                f"{one['gb_s_per_stop_p50']:.4f}" if one else "—",
            ]
        )
    out = _table(
        ["memory MB", "vCPU", f"{top} workers: p50 / floor", f"{top} workers: GB-s per stop", "1 worker: GB-s per stop"],
        ["---:"] * 5,
        rows,
    )
    within = [m for m in mems if (m, top) in by and by[(m, top)]["p50_ratio"] <= TARGET_DEPLOYED]
    cheapest = min((m for m in mems if (m, top) in by), key=lambda m: (by[(m, top)]["gb_s_per_stop_p50"], m))
    deployed = _deployed_memory()
    out += "\n"
    out += (
        f"Smallest size with a {top}-worker stop within {TARGET_DEPLOYED} × its floor: "
        f"{f'{within[0]:,} MB' if within else 'none'}. "
        f"Cheapest per {top}-worker stop: {cheapest:,} MB. "
        f"`run-api`'s `MemorySize` in template.yaml: {deployed if deployed is not None else 'not found'} MB.\n"
    )
    return out


def block_targets(d: dict, _lc: Optional[dict]) -> str:
    deployed = _deployed_memory()
    lines = []
    warm = [r for r in _https(d["stop_latency_lambda_cpu"]) if r["memory_mb"] == deployed and r["workers"] > 0]
    for r in sorted(warm, key=lambda r: r["workers"]):
        verdict = "met" if r["p50_ratio"] <= TARGET_DEPLOYED else "missed"
        lines.append(
            f"- p50 / floor ≤ {TARGET_DEPLOYED} at the deployed {deployed} MB over HTTPS, N = {r['workers']}: "
            f"{r['p50_ratio']:.2f}, {verdict}"
        )
    for r in d["stop_latency"]:
        if r["workers"] == 0:
            continue
        verdict = "met" if r["p50_physical_ratio"] <= TARGET_FULL_VCPU else "missed"
        lines.append(
            f"- p50 / floor ≤ {TARGET_FULL_VCPU} at a full vCPU in process, N = {r['workers']}: "
            f"{r['p50_physical_ratio']:.2f}, {verdict}"
        )
    return "\n".join(lines) + "\n"


def block_throttled(d: dict, _lc: Optional[dict]) -> str:
    """Section 8; with a `wire` column when the run measured several wires
    (plain HTTP, HTTPS with `h2`, HTTPS with `http/1.1` only)."""
    wires = any("wire" in r for r in d["throttled"])
    header = [
        "workers",
        "runs",
        "API processes",
        "drain s",
        "reserve",
        "all told s",
        "STOPPED s",
        "floor s",
        "told / floor",
        "STOPPED / floor",
        "throttled calls",
        "per worker",
        "workers left",
        "caller errors",
        "lag p50 ms",
        "lag p99 ms",
    ]
    if wires:
        header.insert(0, "wire")
    rows = []
    for r in d["throttled"]:
        workers_total = r["workers"] * r["runs"]
        rows.append(
            ([WIRE_LABELS.get(r.get("wire", "http"), r.get("wire", "http"))] if wires else [])
            + [
                str(r["workers"]),
                str(r["runs"]),
                str(r["api_processes"]),
                f"{r['drain_s']:g}",
                f"{r['reserve'] * 100:.0f}%",
                _n(r["all_told_s"]),
                _n(r["stopped_s"]),
                _n(r["floor_s"]),
                _n(r["all_told_s"] / r["floor_s"], 3),
                _n(r["stopped_s"] / r["floor_s"], 3),
                str(r["throttled_calls"]),
                _n(r["throttled_calls"] / workers_total, 3),
                str(r["workers_left_running"]),
                str(r["caller_errors"]),
                f"{r['lag_p50_ms']:.0f}",
                f"{r['lag_p99_ms']:.0f}",
            ]
        )
    return _table(header, (["---"] if wires else []) + ["---:"] * (len(header) - wires), rows)


def block_rest(d: dict, _lc: Optional[dict]) -> str:
    f = d["finalizer"]
    cs = d["cold_start"]
    sizes = {s["binary"]: s for s in d["sizes"]}
    rss = d["rss"]
    tp = d["process_throughput"]
    prof = {p["profile"]: p for p in d["profiles"]}
    lines = [
        f"- Finalizer: a batch of {f['runs']} `STOPPING` runs × {f['workers_each']} workers took "
        f"{f['elapsed_ms']:.0f} ms ({f['records_per_s']:.0f} records/s; floor {f['floor_ms']:.0f} ms, "
        f"ratio {f['ratio']:.2f}).",
        f"- Cold start of the release `run-api` (exec → first Runtime API poll; {cs['starts']} starts, medians): "
        f"init {cs['init_median_ms']:.1f} ms, first invoke (an N = 1 stop) {cs['first_invoke_median_ms']:.1f} ms.",
    ]
    for name in sorted(sizes):
        s = sizes[name]
        lines.append(f"- Size (stripped) of `{name}`: {_mib(s['x86_64_bytes'])} x86-64, {_mib(s['arm64_bytes'])} arm64.")
    lines.append(
        f"- Peak RSS of `run-api`: {_kib_mib(rss['after_init_kib'])} after init, "
        f"{_kib_mib(rss['peak_n500_kib'])} during an N = 500 stop."
    )
    lines.append(
        f"- One process: {tp['sequential_per_s']:.0f} stops/s sequentially (classic Lambda), "
        f"{tp['concurrency_64_per_s']:,.0f} stops/s with `AWS_LAMBDA_MAX_CONCURRENCY=64` "
        f"({tp['concurrency_64_per_s'] / tp['sequential_per_s']:.0f} ×)."
    )
    if "release" in prof and "release-speed" in prof:
        a, b = prof["release"], prof["release-speed"]
        lines.append(
            f"- Profiles: `release` {_mib(a['bytes'])}, init {a['init_median_ms']:.1f} ms, first invoke "
            f"{a['first_invoke_median_ms']:.1f} ms; `release-speed` (opt-level 3) {_mib(b['bytes'])}, init "
            f"{b['init_median_ms']:.1f} ms, first invoke {b['first_invoke_median_ms']:.1f} ms."
        )
    return "\n".join(lines) + "\n"


BLOCKS: dict[str, Callable[[dict, Optional[dict]], str]] = {
    "run": block_run,
    "in-process": block_in_process,
    "via-runtime": block_via_runtime,
    "lambda-cpu": block_lambda_cpu,
    "lambda-cpu-alone": block_lambda_cpu_alone,
    "memory-size": block_memory_size,
    "targets": block_targets,
    "throttled": block_throttled,
    "rest": block_rest,
}


# ------------------------------------------------------------------ the file


def render(doc: str, latest: dict, lambda_cpu: Optional[dict]) -> str:
    """`doc` with every generated block replaced from the JSON."""
    found = [m.group("name") for m in BLOCK.finditer(doc)]
    missing = sorted(set(BLOCKS) - set(found))
    unknown = sorted(set(found) - set(BLOCKS))
    dupes = sorted({n for n in found if found.count(n) > 1})
    if missing or unknown or dupes:
        raise PerfDocError(
            f"docs/performance.md's blocks differ from the generator's: missing {missing}, unknown {unknown}, twice {dupes}"
        )

    def one(m: re.Match) -> str:
        try:
            body = BLOCKS[m.group("name")](latest, lambda_cpu)
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as e:
            raise PerfDocError(f"block {m.group('name')}: the JSON lacks what it needs ({e!r})") from e
        return m.group("begin") + body + m.group("end")

    return BLOCK.sub(one, doc)


def load_json(path: Path) -> Optional[dict]:
    return json.loads(path.read_text()) if path.is_file() else None


def expected(doc_path: Path = DOC, latest_path: Path = LATEST, lambda_cpu_path: Path = LAMBDA_CPU) -> tuple[str, str]:
    """(the file as it is, the file as the generator would write it)."""
    latest = load_json(latest_path)
    if latest is None:
        raise PerfDocError(f"{latest_path} is missing: run `make bench`")
    current = doc_path.read_text()
    return current, render(current, latest, load_json(lambda_cpu_path))


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m localdev.perfdoc", description=__doc__.split("\n")[0])
    p.add_argument("--check", action="store_true", help="exit 1 when docs/performance.md is out of date")
    args = p.parse_args(argv)
    try:
        current, new = expected()
    except PerfDocError as e:
        print(f"perfdoc: {e}", file=sys.stderr)
        return 1
    if args.check:
        if current != new:
            print("perfdoc: docs/performance.md is out of date with bench/results/: run `python -m localdev.perfdoc`", file=sys.stderr)
            return 1
        print("perfdoc: docs/performance.md is up to date")
        return 0
    if current != new:
        DOC.write_text(new)
        print("perfdoc: wrote docs/performance.md")
    else:
        print("perfdoc: docs/performance.md already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
