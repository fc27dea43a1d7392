"""The process supervisor of the local stack: starts moto, the three
functions under `cargo lambda watch`, the local stream mapping (unless
LOCAL_STREAM_MAPPING=off) and the reconciler's schedule, waits for each to be
ready, turns Ctrl-C/SIGTERM into a prompt, complete shutdown (`Stack.stop`)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from . import cfn_template
from .stream_mapper import BatchDeliverer, StreamMapper, http_invoker, template_filter

from .aws import clients, create_resources, workflow_arn
from .events import BUS, QUEUE, SOURCE, create_queue_and_rule
from .common import BIN, REGION, ROOT, TABLE, TARGET, StackError, say
from .reconciler import FUNCTION as RECONCILER, ReconcilerLoop
from .settings import LOCAL_AUTHZ_REFRESH_S, STREAM_MAPPING_VAR, LocalSettings


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM arrived. A BaseException, like KeyboardInterrupt, so
    no `except Exception` on the way (a readiness probe, a boto3 call) can
    swallow it."""


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _StopSignals:
    """Ctrl-C and SIGTERM set `cancel` and raise Interrupted in the main
    thread, so a blocking call (the first `cargo lambda watch` request waits
    for a build of several minutes) is cut short instead of resumed. Only the
    first signal raises: later ones arrive while the stack is being stopped
    and must not cut that short. Inside `deferred()` the raise waits until the
    block ends (a process being started is recorded first, so `stop()` stops
    it). Signals are never blocked: a child would inherit the mask and ignore
    the SIGTERM that stops it."""

    def __init__(self) -> None:
        self.cancel = threading.Event()
        self.deferring = 0
        self.pending = False

    def on_signal(self, _signum, _frame) -> None:
        if self.cancel.is_set():
            return
        self.cancel.set()
        if self.deferring:
            self.pending = True
            return
        raise Interrupted()

    @contextlib.contextmanager
    def deferred(self):
        self.deferring += 1
        try:
            yield
        finally:
            self.deferring -= 1
            if self.pending and not self.deferring:
                self.pending = False
                raise Interrupted()


_STOP = _StopSignals()


def install_stop_signals(cancel: threading.Event) -> None:
    _STOP.cancel, _STOP.deferring, _STOP.pending = cancel, 0, False
    for sig in STOP_SIGNALS:
        signal.signal(sig, _STOP.on_signal)


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None, timeout: float = 10):
    """(status, headers with lower-case names, body); HTTP errors are answers too."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name, or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2 :].split()


def _descendants(roots: list[int]) -> list[tuple[int, str]]:
    """(pid, start time) of every descendant of `roots`, from /proc (empty
    where there is no /proc: there the process groups are all there is)."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        fields = _stat(int(entry)) if entry.isdigit() else None
        if fields:
            children.setdefault(int(fields[1]), []).append(int(entry))
    found: list[tuple[int, str]] = []
    frontier = list(roots)
    while frontier:
        for child in children.get(frontier.pop(), []):
            fields = _stat(child)
            if fields:
                found.append((child, fields[19]))
                frontier.append(child)
    return found


def _alive(proc: tuple[int, str]) -> bool:
    fields = _stat(proc[0])
    return bool(fields) and fields[19] == proc[1] and fields[0] != "Z"


def _signal_all(procs: list[tuple[int, str]], sig: int) -> None:
    """`sig` to each process still alive (the start time guards against a
    reused pid)."""
    for proc in procs:
        if _alive(proc):
            try:
                os.kill(proc[0], sig)
            except ProcessLookupError:
                pass


class Stack:
    def __init__(self, aws_port: int, api_port: int, log_dir: Path):
        self.aws_port, self.api_port, self.log_dir = aws_port, api_port, log_dir
        self.aws_url = f"http://127.0.0.1:{aws_port}"
        self.base_url = f"http://127.0.0.1:{api_port}"
        self.api_url = f"{self.base_url}/lambda-url/run-api"
        # Where the stream mapping and the reconciler's schedule invoke the
        # functions (the Lambda Invoke API), and under which names.
        self.invoke_url = self.base_url
        self.finalizer_name, self.reconciler_name = "stop-finalizer", RECONCILER
        # The template's second stream consumer (docs/events.md); None: not run.
        self.events_name: str | None = "run-events"
        self.events_mapper: StreamMapper | None = None
        self.events_mapper_thread: threading.Thread | None = None
        self.functions_logs = "functions.log"
        self.procs: list[subprocess.Popen] = []
        self.mapper: StreamMapper | None = None
        self.mapper_thread: threading.Thread | None = None
        self.reconciler: ReconcilerLoop | None = None
        self.reconciler_thread: threading.Thread | None = None
        self.settings: LocalSettings | None = None
        self._log_handlers: list[tuple[logging.Logger, logging.Handler]] = []
        self.cancel = threading.Event()

    # -- processes ---------------------------------------------------------
    def _spawn(self, args: list[str], log_name: str, env: dict | None = None) -> subprocess.Popen:
        log = open(self.log_dir / log_name, "ab")
        # Own session: Ctrl-C reaches only this program, which then stops
        # every process it started, group by group. A stop signal's
        # Interrupted waits until the process is recorded, so none escapes `stop()`.
        with _STOP.deferred():
            p = subprocess.Popen(
                args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
            )
            self.procs.append(p)
        return p

    def _check_alive(self, p: subprocess.Popen, what: str, log_name: str) -> None:
        if p.poll() is not None:
            raise StackError(f"{what} exited with status {p.returncode}; see {self.log_dir / log_name}.")

    def _log_to(self, logger_name: str, file_name: str) -> None:
        handler = logging.FileHandler(self.log_dir / file_name)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger = logging.getLogger(logger_name)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        self._log_handlers.append((logger, handler))

    def start(self) -> None:
        # The environment's settings, checked before anything else.
        self.settings = settings = LocalSettings.from_env()
        for port, var in ((self.aws_port, "LOCAL_AWS_PORT"), (self.api_port, "LOCAL_API_PORT")):
            if port_in_use(port):
                raise StackError(
                    f"Port {port} ({var}) is already in use: stop whatever listens there or choose another, "
                    f"e.g. make local {var}={port + 1}."
                )
        for tool in ("cargo-lambda",):
            if not (BIN / tool).exists():
                raise StackError(f"{BIN / tool} is missing: run `make venv` first.")
        if shutil.which("cargo") is None:
            raise StackError("cargo is not on PATH: install the Rust toolchain (rustup) first.")
        # The mapping filters as the deployed one does: its pattern is read
        # from template.yaml (before anything is started or built); so are the
        # run table's keys and indexes.
        try:
            stream_filter = template_filter()
        except Exception as e:
            raise StackError(f"cannot read the stream mapping's filter from template.yaml: {e}") from e
        try:
            table_schema = cfn_template.run_table_schema(cfn_template.load())
        except Exception as e:
            raise StackError(f"cannot read the run table's keys and indexes from template.yaml: {e}") from e
        indexes = [g["IndexName"] for g in table_schema["GlobalSecondaryIndexes"]]
        self.log_dir.mkdir(parents=True, exist_ok=True)
        say(f"- logs: {self.log_dir}/ (moto.log, {self.functions_logs}, stream-mapper.log, reconciler.log)")

        say(f"- starting moto (DynamoDB, DynamoDB Streams, ECS, EventBridge, SQS) on {self.aws_url}")
        moto = self._spawn([sys.executable, "-m", "localdev.moto_serial", "-H", "127.0.0.1", "-p", str(self.aws_port)], "moto.log")
        self._wait(lambda: http("GET", f"{self.aws_url}/moto-api/")[0] == 200, 60, moto, "moto", "moto.log")
        # ECS tasks in moto advance a state each time they are described; real
        # tasks run until stopped.
        http(
            "POST",
            f"{self.aws_url}/moto-api/state-manager/set-transition",
            json.dumps({"model_name": "ecs::task", "transition": {"progression": "manual", "times": 1_000_000_000}}).encode(),
        )
        self.ddb, self.ecs = create_resources(self.aws_url, table_schema)
        self.events_queue = create_queue_and_rule(self.aws_url)
        say(f"- run events: moto's {BUS} bus, a rule ({SOURCE}) feeding the queue {QUEUE} (make events tails it)")

        self._start_functions(settings, indexes)

        if settings.stream_mapping:
            _, streams, _ = clients(self.aws_url)
            stream_arn = self.ddb.describe_table(TableName=TABLE)["Table"]["LatestStreamArn"]
            self._log_to("stream-mapper", "stream-mapper.log")
            self.mapper = StreamMapper(
                streams, stream_arn, BatchDeliverer(http_invoker(self.invoke_url, self.finalizer_name)), stream_filter
            )
            self.mapper_thread = threading.Thread(target=self.mapper.run, name="stream-mapper", daemon=True)
            self.mapper_thread.start()
            say(f"- stream mapping: run table stream → {self.finalizer_name} (filter Status = STOPPING, 4 polls a second)")
        if settings.stream_mapping and self.events_name:
            # The template's second mapping: every record, to run-events.
            _, streams, _ = clients(self.aws_url)
            stream_arn = self.ddb.describe_table(TableName=TABLE)["Table"]["LatestStreamArn"]
            self.events_mapper = StreamMapper(
                streams, stream_arn, BatchDeliverer(http_invoker(self.invoke_url, self.events_name)), None
            )
            self.events_mapper_thread = threading.Thread(target=self.events_mapper.run, name="events-mapper", daemon=True)
            self.events_mapper_thread.start()
            say(f"- stream mapping: run table stream → {self.events_name} (every record)")
        if not settings.stream_mapping:
            say(f"- stream mapping: off ({STREAM_MAPPING_VAR}=off): runs are finalized by the reconciler alone, "
                "and no run events are published")

        # The template's schedule, locally: a pass every period, one at a time.
        self._log_to("reconciler", "reconciler.log")
        self.reconciler = ReconcilerLoop(http_invoker(self.invoke_url, self.reconciler_name), settings.reconcile_period_s)
        self.reconciler_thread = threading.Thread(target=self.reconciler.run, name="reconciler", daemon=True)
        self.reconciler_thread.start()
        say(
            f"- reconciler: {RECONCILER} every {settings.reconcile_period_s:g} s, finalizing runs STOPPING longer than "
            f"{settings.reconcile_after_ms} ms ({self.log_dir / 'reconciler.log'})"
        )

    def _start_functions(self, settings: LocalSettings, indexes: list[str]) -> None:
        """The four functions under `cargo lambda watch`, built and warm."""
        say(
            f"- starting the four functions (run-api, stop-finalizer, {RECONCILER}, run-events) under cargo lambda watch "
            f"on {self.base_url} (the first build takes a few minutes)"
        )
        env = dict(os.environ)
        env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
        env.pop("AWS_PROFILE", None)
        fn_env = ",".join(
            [
                f"RUNS_TABLE={TABLE}",
                "ALLOW_UNAUTHENTICATED_LOCAL=true",
                f"AWS_ENDPOINT_URL={self.aws_url}",
                f"AWS_REGION={REGION}",
                "AWS_ACCESS_KEY_ID=local",
                "AWS_SECRET_ACCESS_KEY=local",
                "RUST_LOG=info",
                "FINALIZER_POLL_MS=100",
                "FINALIZER_WAIT_MS=60000",
                # moto's ListTasks and DescribeTasks are consistent at once: a
                # short settle keeps the stream the fast path ahead of the
                # local reconciler's 5 s threshold (deployed: 10 s and 5 s).
                "SWEEP_SETTLE_SECONDS=1",
                "MISSING_CONFIRM_SECONDS=1",
                f"RECONCILE_AFTER_MS={settings.reconcile_after_ms}",
                f"EVENT_BUS_NAME={BUS}",
                f"EVENT_SOURCE={SOURCE}",
                "METRICS_STACK=local",
            ]
            + ([f"STOPPING_INDEX={indexes[0]}"] if indexes else [])
            + (
                [f"AUTHZ_POLICY_FILE={settings.policy_file}", f"AUTHZ_REFRESH_SECONDS={LOCAL_AUTHZ_REFRESH_S}"]
                if settings.policy_file
                else []
            )
        )
        if settings.policy_file:
            say(
                f"- run-api authorizes with the policy set in {settings.policy_file} (read again every "
                f"{LOCAL_AUTHZ_REFRESH_S} s; an invalid set denies every request, see {self.functions_logs})"
            )
        watch = self._spawn(
            [str(BIN / "cargo-lambda"), "lambda", "watch", "--ignore-changes", "-A", "127.0.0.1", "-P", str(self.api_port), "--env-var", fn_env],
            "functions.log",
            env,
        )
        self._warm((watch, "cargo lambda watch", "functions.log"), (watch, "cargo lambda watch", "functions.log"))

    def _warm(self, api: tuple, functions: tuple, timeout: float = 1500) -> None:
        """Wait until run-api answers a GetWorkflowRun probe at `api_url` and
        the finalizer and the reconciler answer through the Invoke API at
        `invoke_url` (the first requests wait for builds or cold starts).
        `api` and `functions`: (process, what, log name) of whoever serves
        them, for a failure's one sentence."""
        probe = json.dumps({"WorkflowArn": workflow_arn("probe"), "RunId": "probe"}).encode()
        url = self.api_url if self.api_url.endswith("/") else f"{self.api_url}/"
        self._wait(
            lambda: http(
                "POST",
                url,
                probe,
                {"X-Amz-Target": f"{TARGET}.GetWorkflowRun", "Content-Type": "application/x-amz-json-1.0"},
                timeout=1200,
            )[1].get("x-amzn-errortype")
            in self._warm_answers(),
            timeout,
            *api,
        )
        invoke = http_invoker(self.invoke_url, self.finalizer_name, timeout=1200)
        self._wait(lambda: invoke({"Records": []}).get("batchItemFailures") == [], timeout, *functions)
        if self.events_name:
            publish = http_invoker(self.invoke_url, self.events_name, timeout=1200)
            self._wait(lambda: publish({"Records": []}).get("batchItemFailures") == [], timeout, *functions)
        reconcile = http_invoker(self.invoke_url, self.reconciler_name, timeout=1200)
        warm: list[dict] = []
        self._wait(lambda: warm.append(reconcile({})) or True, timeout, *functions)
        if "found" not in warm[-1]:
            raise StackError(f"{RECONCILER}'s first pass answered {json.dumps(warm[-1])[:300]}; see {self.log_dir / functions[2]}.")
        say("- all four functions built and warm")

    def _warm_answers(self) -> tuple[str, ...]:
        """What run-api answers the unauthenticated warm-up probe once it
        serves: "no such run", or, with a policy file that does not permit
        the local principal, a denial."""
        if self.settings is not None and self.settings.policy_file:
            return ("ResourceNotFoundException", "AccessDeniedException")
        return ("ResourceNotFoundException",)

    def _wait(self, ready, timeout: float, proc: subprocess.Popen, what: str, log_name: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.cancel.is_set():
                raise Interrupted()
            self._check_alive(proc, what, log_name)
            try:
                if ready():
                    return
            except Exception:
                pass
            time.sleep(0.25)
        raise StackError(f"{what} did not become ready within {timeout:.0f} s; see {self.log_dir / log_name}.")

    def stop(self, announce: str | None = None) -> None:
        self.cancel.set()  # from here on a stop signal is absorbed, never cuts the cleanup short
        if announce:
            say(announce)
        if self.mapper:
            self.mapper.stop()
        if self.events_mapper:
            self.events_mapper.stop()
        if self.reconciler:
            self.reconciler.stop()
        if self.mapper_thread:
            self.mapper_thread.join(timeout=5)
        if self.events_mapper_thread:
            self.events_mapper_thread.join(timeout=5)
        # A pass in flight ends when `cargo lambda watch` goes, below.
        if self.reconciler_thread:
            self.reconciler_thread.join(timeout=1)
        # Every descendant too, recorded before anything dies (an orphan is
        # reparented and can no longer be found): a tool may start its child
        # in a process group of its own (`cargo lambda watch`'s `cargo run`,
        # still waiting for the build lock, was left running that way).
        tree = _descendants([p.pid for p in self.procs if p.poll() is None])
        for p in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        _signal_all(tree, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for p in reversed(self.procs):
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            # Whatever is left of the group (a child that ignored SIGTERM) goes too.
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
        while any(_alive(proc) for proc in tree) and time.monotonic() < deadline:
            time.sleep(0.05)
        _signal_all(tree, signal.SIGKILL)
        if self.reconciler_thread:
            self.reconciler_thread.join(timeout=5)
        for logger, handler in self._log_handlers:
            logger.removeHandler(handler)
            handler.close()
        self._log_handlers.clear()
