"""Tests of the pieces of `make sam-local` that need no Docker engine
(localdev/sam.py, events/sam-local-env.json, samconfig.toml's `local`
section, mk/sam-local.mk's skip): the end-to-end tests with Docker are
tests/it/runtime/sam_local.rs (`make sam-local-test`).
Run by `make test` (`.venv/bin/python -m pytest tools/localdev/tests`)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import threading
import tomllib
from pathlib import Path

from localdev import cfn_template
from localdev.common import ROOT, TABLE
from localdev.sam import ENV_FILE, FUNCTION_IDS, HOST_FROM_CONTAINER, Forwarder, env_vars_file, local_parameters, sam_local_args
from localdev.events import BUS, SOURCE
from localdev.settings import LocalSettings



def declared_env(template: dict, function: str) -> dict:
    return ((template["Resources"][function]["Properties"].get("Environment") or {}).get("Variables")) or {}


def test_the_env_file_sets_only_variables_the_template_declares():
    """SAM's --env-vars silently drops a variable the template does not
    declare, so every entry of events/sam-local-env.json must be declared by
    its function; each function that reads the run table gets the local
    one (run-events reads only its stream records), and run-events the bus
    and source make local uses."""
    template = cfn_template.load()
    env = json.loads(ENV_FILE.read_text())
    assert set(env) == set(FUNCTION_IDS.values())
    for function, variables in env.items():
        declared = declared_env(template, function)
        assert set(variables) <= set(declared), f"{function}: {sorted(set(variables) - set(declared))} not declared"
        if "RUNS_TABLE" in declared:
            assert variables["RUNS_TABLE"] == TABLE, function
        assert all(isinstance(v, str) for v in variables.values())
    assert (env["RunEventsFunction"]["EVENT_BUS_NAME"], env["RunEventsFunction"]["EVENT_SOURCE"]) == (BUS, SOURCE)


def test_the_stack_env_file_points_at_its_moto_and_serves_without_identity(tmp_path):
    """make sam-local's copy of the env file: every function's
    AWS_ENDPOINT_URL is the stack's moto as a container sees it, run-api
    (only) has ALLOW_UNAUTHENTICATED_LOCAL=true (start-api sends no IAM
    identity), the reconciler LOCAL_RECONCILE_AFTER_MS; the rest as shipped."""
    settings = LocalSettings(stream_mapping=True, reconcile_period_s=10.0, reconcile_after_ms=7000)
    written = json.loads(env_vars_file(settings, tmp_path, 5123).read_text())
    shipped = json.loads(ENV_FILE.read_text())
    for function, variables in shipped.items():
        assert variables["AWS_ENDPOINT_URL"] == "http://host.docker.internal:5000", function
        assert "ALLOW_UNAUTHENTICATED_LOCAL" not in variables, "the shipped file keeps run-api's IAM check"
        variables["AWS_ENDPOINT_URL"] = "http://host.docker.internal:5123"
    shipped["RunApiFunction"]["ALLOW_UNAUTHENTICATED_LOCAL"] = "true"
    shipped["StopReconcilerFunction"]["RECONCILE_AFTER_MS"] = "7000"
    assert written == shipped


def test_the_local_parameters_are_accepted_by_the_template():
    """The parameters make sam-local passes satisfy the template's
    constraints (a refused value would stop SAM at start-up)."""
    params = cfn_template.load()["Parameters"]
    for item in local_parameters(5000):
        name, value = item.split("=", 1)
        p = params[name]
        if "AllowedPattern" in p:
            assert re.fullmatch(p["AllowedPattern"], value), (name, value)
        if "AllowedValues" in p:
            assert value in p["AllowedValues"], (name, value)
    args = sam_local_args("start-api", 9000, 5000, Path("env.json"))
    assert f"{HOST_FROM_CONTAINER}:host-gateway" in args
    assert "LocalEndpointUrl=http://host.docker.internal:5000" in args and "LocalUnauthenticated=true" in args


def test_samconfig_local_section_is_what_the_docs_use():
    """`sam local invoke --config-env local` (docs/deploy.md): the built
    template, the shipped env file, LocalEndpointUrl on the default port,
    host.docker.internal resolvable, no pull; the local section leaves
    LocalUnauthenticated at its default (the events carry an IAM caller)."""
    conf = tomllib.loads((ROOT / "samconfig.toml").read_text())
    local = conf["local"]["local_invoke"]["parameters"]
    assert local["template_file"] == "target/sam/build/template.yaml"
    assert (ROOT / local["env_vars"]).resolve() == ENV_FILE
    assert local["parameter_overrides"] == "LocalEndpointUrl=http://host.docker.internal:5000"
    assert local["add_host"] == ["host.docker.internal:host-gateway"]
    assert local["skip_pull_image"] is True
    assert "deploy" not in conf["local"], "the local section must never deploy"


def test_the_forwarder_carries_bytes_both_ways():
    """The forwarder (Docker's bridge address -> moto on loopback) relays a
    request and its answer unchanged, and stops."""
    upstream = socket.create_server(("127.0.0.1", 0))
    target = upstream.getsockname()

    def echo_once():
        conn, _ = upstream.accept()
        with conn:
            data = b""
            while not data.endswith(b"\n"):
                data += conn.recv(1024)
            conn.sendall(b"echo:" + data)

    t = threading.Thread(target=echo_once, daemon=True)
    t.start()
    probe = socket.create_server(("127.0.0.1", 0))
    listen = probe.getsockname()
    probe.close()
    fwd = Forwarder(listen, target)
    try:
        with socket.create_connection(listen, timeout=5) as c:
            c.sendall(b"hello\n")
            got = b""
            while not got.endswith(b"\n"):
                chunk = c.recv(1024)
                if not chunk:
                    break
                got += chunk
        assert got == b"echo:hello\n"
    finally:
        fwd.stop()
        upstream.close()
    t.join(timeout=5)


def _path_without_docker(tmp_path: Path) -> str:
    """A PATH with the tools the make recipe uses, and no docker."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("make", "bash", "sh", "cat", "uname", "grep", "env", "mkdir", "touch"):
        found = subprocess.run(["bash", "-c", f"command -v {tool}"], capture_output=True, text=True).stdout.strip()
        if found:
            (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


def test_without_docker_the_sam_local_tests_are_skipped_in_one_line(tmp_path):
    """`make sam-local-test` without a docker client: one SKIPPED line naming
    it, exit 0, and no test run."""
    env = {k: v for k, v in os.environ.items() if k != "CI" and not k.startswith("MAKE")}
    env["PATH"] = _path_without_docker(tmp_path)
    out = subprocess.run(["make", "-s", "--no-print-directory", "sam-local-test"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("sam-local-test: SKIPPED the sam local tests"), out.stdout
    assert "no docker client" in lines[0]


def test_in_ci_a_missing_docker_is_a_failure(tmp_path):
    """With CI=true the same situation fails, so a broken install in CI
    cannot pass as a skip."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    env.update(PATH=_path_without_docker(tmp_path), CI="true")
    out = subprocess.run(["make", "-s", "--no-print-directory", "sam-local-test"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode != 0
    assert "sam-local-test: FAILED: CI runs the sam local tests, but there is no docker client" in out.stderr
    assert "SKIPPED" not in out.stdout
