"""`make sam-local`: the local stack with the functions in SAM's Lambda
containers instead of `cargo lambda watch`.

    run-api                       behind `sam local start-api` (the template's
                                  HTTP API route, payload 2.0): `api=` is its URL
    stop-finalizer, the reconciler,
    run-events                    behind `sam local start-lambda` (the Lambda
                                  Invoke API), fed by the local stream mappings
                                  and the reconciler's schedule; run-events
                                  publishes to moto's default bus

Both serve the arm64 build of `sam build` (target/sam/build/) in the image
`public.ecr.aws/lambda/provided:al2023-arm64` (the real one, or the stand-in of
localdev/standin_image.py), with SAM's Runtime Interface Emulator. The
functions reach moto through AWS_ENDPOINT_URL
(`http://host.docker.internal:PORT`, the host seen from a container) and run-api
serves callers without an IAM identity (ALLOW_UNAUTHENTICATED_LOCAL): the
template declares both variables only under its LocalEndpointUrl and
LocalUnauthenticated conditions, absent in a deployed stack; locally their
values come from an --env-vars file based on events/sam-local-env.json, the
file `sam local invoke` uses too (see `local_parameters`).
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from pathlib import Path

from .aws import aws_env
from .common import REGION, ROOT, StackError, say
from .reconciler import FUNCTION as RECONCILER
from .settings import LocalSettings
from .supervisor import Stack, port_in_use

SAM = ROOT / ".venv-sam" / "bin" / "sam"
BUILT_TEMPLATE = ROOT / "target" / "sam" / "build" / "template.yaml"
ENV_FILE = ROOT / "events" / "sam-local-env.json"
IMAGE = "public.ecr.aws/lambda/provided:al2023-arm64"
# How a Lambda container reaches the host (Docker resolves host-gateway).
HOST_FROM_CONTAINER = "host.docker.internal"
# SAM names functions by their logical ids.
FUNCTION_IDS = {
    "run-api": "RunApiFunction",
    "stop-finalizer": "StopFinalizerFunction",
    RECONCILER: "StopReconcilerFunction",
    "run-events": "RunEventsFunction",
}


def sam_env() -> dict:
    """The SAM CLI's environment: the local stack's fake credentials and
    region (`aws_env`), which SAM hands to the function containers, and
    offline (no telemetry, no version check, no instance metadata)."""
    env = aws_env()
    for k in ("AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN"):
        env.pop(k, None)
    env.update(SAM_CLI_TELEMETRY="0", SAM_CLI_DISABLE_VERSION_CHECK="1", AWS_EC2_METADATA_DISABLED="true")
    return env


def docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


def check_prerequisites() -> None:
    """One sentence for the first thing missing (the Makefile target builds
    or loads each of them first)."""
    if not SAM.exists():
        raise StackError(f"{SAM} is missing: run `make sam-venv` (or `make sam-local`, which does).")
    if not BUILT_TEMPLATE.exists():
        raise StackError(f"{BUILT_TEMPLATE} is missing: run `make template-build` (or `make sam-local`, which does).")
    try:
        info = docker("info", "--format", "{{.ServerVersion}}", timeout=30)
    except (FileNotFoundError, subprocess.TimeoutExpired):
        info = None
    if info is None or info.returncode != 0:
        raise StackError("no Docker engine answers `docker info`: start one (as root: tools/samlocal/engine.sh start).")
    if docker("image", "inspect", IMAGE).returncode != 0:
        raise StackError(f"the image {IMAGE} is not in the Docker engine: run `make sam-image` (or `make sam-local`, which does).")


def bridge_gateway() -> str | None:
    """The host's address on Docker's default bridge (what host-gateway
    resolves to in a container), or None (Docker Desktop: its VM's)."""
    r = docker("network", "inspect", "bridge", "--format", "{{range .IPAM.Config}}{{.Gateway}} {{end}}")
    addrs = r.stdout.split() if r.returncode == 0 else []
    if addrs:
        return addrs[0]
    # The default bridge often names no gateway: it is docker0's address.
    try:
        out = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", "docker0"], capture_output=True, text=True, timeout=10).stdout
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return None
    for word in out.split():
        if "/" in word and word.count(".") == 3:
            return word.split("/")[0]
    return None


class Forwarder:
    """Forwards TCP connections from `listen` (the Docker bridge's host
    address, where a Lambda container finds host.docker.internal) to moto on
    127.0.0.1, so moto itself stays on loopback."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int]):
        self.target = target
        self.server = socket.create_server(listen, reuse_port=False)
        self.server.settimeout(0.5)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="moto-forwarder", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.server.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            threading.Thread(target=self._pipe_pair, args=(conn,), daemon=True).start()

    def _pipe_pair(self, conn: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=10)
        except OSError:
            conn.close()
            return
        upstream.settimeout(None)
        conn.settimeout(None)
        threading.Thread(target=self._pipe, args=(upstream, conn), daemon=True).start()
        self._pipe(conn, upstream)

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def stop(self) -> None:
        self.stopping.set()
        self.server.close()
        self.thread.join(timeout=2)


def local_parameters(aws_port: int, unauthenticated: bool = True) -> list[str]:
    """The template parameters that point the functions at the local stack.

    SAM CLI 1.170 cannot evaluate the template's `!If [..., !Ref AWS::NoValue]`
    (its resolver fails on NoValue and leaves the variable blank), so the
    values that take effect come from the env file (`env_vars_file`), which
    may set them because the template declares them; the parameters are
    passed as well, so that a SAM CLI that evaluates them agrees."""
    return [f"LocalEndpointUrl=http://{HOST_FROM_CONTAINER}:{aws_port}", f"LocalUnauthenticated={'true' if unauthenticated else 'false'}"]


def container_marker(aws_port: int) -> str:
    """The environment entry that every Lambda container of one stack has,
    and no other stack's: how its containers are found to remove them."""
    return f"AWS_ENDPOINT_URL=http://{HOST_FROM_CONTAINER}:{aws_port}"


def containers_of(aws_port: int) -> list[str]:
    """The ids of the containers (running or not) of the stack on `aws_port`."""
    ids = docker("ps", "-aq", "--no-trunc").stdout.split()
    if not ids:
        return []
    r = docker("inspect", "--format", "{{.Id}} {{json .Config.Env}}", *ids)
    mine = []
    for line in r.stdout.splitlines():
        cid, _, env = line.partition(" ")
        try:
            if container_marker(aws_port) in (json.loads(env) or []):
                mine.append(cid)
        except json.JSONDecodeError:
            continue
    return mine


def remove_containers(aws_port: int) -> int:
    ids = containers_of(aws_port)
    if ids:
        docker("rm", "-f", *ids, timeout=120)
    return len(ids)


def env_vars_file(settings: LocalSettings, log_dir: Path, aws_port: int) -> Path:
    """events/sam-local-env.json for this stack: its moto port, its reconcile
    delay, and run-api serving callers without an IAM identity (start-api
    sends none)."""
    env = json.loads(ENV_FILE.read_text())
    for variables in env.values():
        variables["AWS_ENDPOINT_URL"] = f"http://{HOST_FROM_CONTAINER}:{aws_port}"
    env[FUNCTION_IDS["run-api"]]["ALLOW_UNAUTHENTICATED_LOCAL"] = "true"
    env[FUNCTION_IDS[RECONCILER]]["RECONCILE_AFTER_MS"] = str(settings.reconcile_after_ms)
    out = log_dir / "sam-local-env.json"
    out.write_text(json.dumps(env, indent=2) + "\n")
    return out


def sam_local_args(command: str, port: int, aws_port: int, env_file: Path) -> list[str]:
    return [
        str(SAM),
        "local",
        command,
        "--template-file",
        str(BUILT_TEMPLATE),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--env-vars",
        str(env_file),
        "--parameter-overrides",
        *local_parameters(aws_port),
        "--add-host",
        f"{HOST_FROM_CONTAINER}:host-gateway",
        "--skip-pull-image",
        # One container per function, made on its first invocation and kept:
        # an emulated arm64 container is slow to start.
        "--warm-containers",
        "LAZY",
        "--region",
        REGION,
    ]


class SamStack(Stack):
    """The local stack of `make local`, with the functions in SAM's containers."""

    def __init__(self, aws_port: int, api_port: int, lambda_port: int, log_dir: Path):
        super().__init__(aws_port, api_port, log_dir)
        self.lambda_port = lambda_port
        # start-api serves the template's route, POST /, at its root.
        self.api_url = self.base_url
        self.invoke_url = f"http://127.0.0.1:{lambda_port}"
        self.finalizer_name, self.reconciler_name = FUNCTION_IDS["stop-finalizer"], FUNCTION_IDS[RECONCILER]
        self.events_name = FUNCTION_IDS["run-events"]
        self.functions_logs = "sam-start-api.log, sam-start-lambda.log"
        self.forwarder: Forwarder | None = None
        self.containers_checked = False

    def start(self) -> None:
        if port_in_use(self.lambda_port):
            raise StackError(
                f"Port {self.lambda_port} (LOCAL_LAMBDA_PORT) is already in use: stop whatever listens there or choose "
                f"another, e.g. make sam-local LOCAL_LAMBDA_PORT={self.lambda_port + 1}."
            )
        check_prerequisites()
        self.containers_checked = True
        left = remove_containers(self.aws_port)
        if left:
            say(f"- removed {left} container(s) left by an earlier stack on port {self.aws_port}")
        super().start()

    def _start_functions(self, settings: LocalSettings, indexes: list[str]) -> None:
        if settings.policy_file:
            raise StackError(
                "AUTHZ_POLICY_FILE is for make local; the SAM build reads its policy set from an SSM parameter "
                "(AuthzPolicyParameter, docs/authorization.md): unset it for make sam-local."
            )
        gateway = bridge_gateway()
        if gateway:
            try:
                self.forwarder = Forwarder((gateway, self.aws_port), ("127.0.0.1", self.aws_port))
            except OSError as e:
                raise StackError(f"cannot listen on {gateway}:{self.aws_port} (Docker's bridge) for the containers: {e}.") from e
            say(f"- moto is reachable from the containers as http://{HOST_FROM_CONTAINER}:{self.aws_port} (via {gateway})")
        env_file = env_vars_file(settings, self.log_dir, self.aws_port)
        say(
            f"- starting run-api behind `sam local start-api` on {self.base_url} and stop-finalizer, {RECONCILER} and run-events behind "
            f"`sam local start-lambda` on {self.invoke_url}: arm64 Lambda containers from target/sam/build/ "
            "(the first invocation of each starts its container: under arm64 emulation this takes a while)"
        )
        api = self._spawn(sam_local_args("start-api", self.api_port, self.aws_port, env_file), "sam-start-api.log", sam_env())
        fns = self._spawn(sam_local_args("start-lambda", self.lambda_port, self.aws_port, env_file), "sam-start-lambda.log", sam_env())
        self._warm((api, "sam local start-api", "sam-start-api.log"), (fns, "sam local start-lambda", "sam-start-lambda.log"), timeout=900)

    def stop(self, announce: str | None = None) -> None:
        super().stop(announce)
        if self.forwarder:
            self.forwarder.stop()
            self.forwarder = None
        if self.containers_checked:
            removed = remove_containers(self.aws_port)
            if removed:
                say(f"- removed {removed} Lambda container(s)")
