#!/usr/bin/env python3
"""The whole service on this machine: `make local`, `make demo`, `make seed`.

    up     moto (DynamoDB, DynamoDB Streams, ECS) + both functions under
           `cargo lambda watch` + the local stream mapping; seeds a demo run,
           prints READY and the AWS CLI commands, serves until Ctrl-C/SIGTERM.
    demo   the guided tour: up, stop a seeded run with the real AWS CLI, watch
           it reach STOPPED, show the workers and the run's history, shut down.
    seed   add a run (workers, child runs, child policy) to a running stack.

Run it with the project's virtualenv python (`make venv` creates it); the
Makefile targets do.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
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
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
REGION = "us-east-1"
ACCOUNT = "123456789012"
TABLE = "WorkflowRuns"
CLUSTER = "mwaa-workers"
TARGET = "AmazonMWAAServerless"

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stream_mapper import BatchDeliverer, StreamMapper, http_invoker  # noqa: E402


class StackError(Exception):
    """A failure the user can act on, said in one sentence."""


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


def say(msg: str) -> None:
    """Print a progress line. A reader that went away (`make local | head`)
    must not turn a clean shutdown into a traceback."""
    try:
        print(msg, flush=True)
    except BrokenPipeError:
        # Python would report the failed flush again at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


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


def aws_env(aws_url: str | None = None) -> dict:
    env = dict(os.environ)
    env.update(
        AWS_ACCESS_KEY_ID="local",
        AWS_SECRET_ACCESS_KEY="local",
        AWS_DEFAULT_REGION=REGION,
        AWS_REGION=REGION,
        AWS_PAGER="",
    )
    env.pop("AWS_PROFILE", None)
    if aws_url:
        env["AWS_ENDPOINT_URL"] = aws_url
    return env


def clients(aws_url: str):
    import boto3

    session = boto3.session.Session(aws_access_key_id="local", aws_secret_access_key="local", region_name=REGION)
    return (
        session.client("dynamodb", endpoint_url=aws_url),
        session.client("dynamodbstreams", endpoint_url=aws_url),
        session.client("ecs", endpoint_url=aws_url),
    )


class Stack:
    def __init__(self, aws_port: int, api_port: int, log_dir: Path):
        self.aws_port, self.api_port, self.log_dir = aws_port, api_port, log_dir
        self.aws_url = f"http://127.0.0.1:{aws_port}"
        self.base_url = f"http://127.0.0.1:{api_port}"
        self.api_url = f"{self.base_url}/lambda-url/run-api"
        self.procs: list[subprocess.Popen] = []
        self.mapper: StreamMapper | None = None
        self.mapper_thread: threading.Thread | None = None
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

    def start(self) -> None:
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
        self.log_dir.mkdir(parents=True, exist_ok=True)
        say(f"- logs: {self.log_dir}/ (moto.log, functions.log, stream-mapper.log)")

        say(f"- starting moto (DynamoDB, DynamoDB Streams, ECS) on {self.aws_url}")
        moto = self._spawn([sys.executable, "tools/moto_serial.py", "-H", "127.0.0.1", "-p", str(self.aws_port)], "moto.log")
        self._wait(lambda: http("GET", f"{self.aws_url}/moto-api/")[0] == 200, 60, moto, "moto", "moto.log")
        # ECS tasks in moto advance a state each time they are described; real
        # tasks run until stopped.
        http(
            "POST",
            f"{self.aws_url}/moto-api/state-manager/set-transition",
            json.dumps({"model_name": "ecs::task", "transition": {"progression": "manual", "times": 1_000_000_000}}).encode(),
        )
        self._create_resources()

        say(f"- starting both functions under cargo lambda watch on {self.base_url} (the first build takes a few minutes)")
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
            ]
        )
        watch = self._spawn(
            [str(BIN / "cargo-lambda"), "lambda", "watch", "--ignore-changes", "-A", "127.0.0.1", "-P", str(self.api_port), "--env-var", fn_env],
            "functions.log",
            env,
        )
        probe = json.dumps({"WorkflowArn": workflow_arn("probe"), "RunId": "probe"}).encode()
        self._wait(
            lambda: http(
                "POST",
                f"{self.api_url}/",
                probe,
                {"X-Amz-Target": f"{TARGET}.GetWorkflowRun", "Content-Type": "application/x-amz-json-1.0"},
                timeout=1200,
            )[1].get("x-amzn-errortype")
            == "ResourceNotFoundException",
            1500,
            watch,
            "cargo lambda watch",
            "functions.log",
        )
        invoke = http_invoker(self.base_url, "stop-finalizer", timeout=1200)
        self._wait(lambda: invoke({"Records": []}).get("batchItemFailures") == [], 1500, watch, "cargo lambda watch", "functions.log")
        say("- both functions built and warm")

        _, streams, _ = clients(self.aws_url)
        stream_arn = self.ddb.describe_table(TableName=TABLE)["Table"]["LatestStreamArn"]
        mapper_log = logging.FileHandler(self.log_dir / "stream-mapper.log")
        mapper_log.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logging.getLogger("stream-mapper").addHandler(mapper_log)
        logging.getLogger("stream-mapper").setLevel(logging.INFO)
        self.mapper = StreamMapper(streams, stream_arn, BatchDeliverer(http_invoker(self.base_url, "stop-finalizer")))
        self.mapper_thread = threading.Thread(target=self.mapper.run, name="stream-mapper", daemon=True)
        self.mapper_thread.start()
        say("- stream mapping: run table stream → stop-finalizer (filter Status = STOPPING, 4 polls a second)")

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

    def _create_resources(self) -> None:
        self.ddb, _, self.ecs = clients(self.aws_url)
        self.ddb.create_table(
            TableName=TABLE,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[
                {"AttributeName": "WorkflowArn", "AttributeType": "S"},
                {"AttributeName": "RunId", "AttributeType": "S"},
            ],
            KeySchema=[{"AttributeName": "WorkflowArn", "KeyType": "HASH"}, {"AttributeName": "RunId", "KeyType": "RANGE"}],
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )
        self.ecs.create_cluster(clusterName=CLUSTER)
        self.ecs.register_task_definition(
            family="airflow-worker", containerDefinitions=[{"name": "worker", "image": "airflow-worker:local", "memory": 512}]
        )
        say(f"- created run table {TABLE} (stream on) and ECS cluster {CLUSTER}")

    def stop(self, announce: str | None = None) -> None:
        self.cancel.set()  # from here on a stop signal is absorbed, never cuts the cleanup short
        if announce:
            say(announce)
        if self.mapper:
            self.mapper.stop()
        if self.mapper_thread:
            self.mapper_thread.join(timeout=5)
        for p in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
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


def workflow_arn(name: str) -> str:
    suffix = uuid.uuid5(uuid.NAMESPACE_URL, name).hex[:10]
    return f"arn:aws:airflow-serverless:{REGION}:{ACCOUNT}:workflow/{name}-{suffix}"


def seed_run(
    aws_url: str,
    workflow: str = "demo-etl",
    run_id: str | None = None,
    workers: int = 3,
    children: int = 0,
    child_policy: str | None = None,
    child_keys_out: list | None = None,
) -> tuple[str, str, list[str]]:
    """Write a RUNNING run with `workers` real ECS tasks (and, if asked, child
    runs with one worker each, whose keys go to `child_keys_out`). Returns
    (workflow ARN, run id, task ARNs)."""
    ddb, _, ecs = clients(aws_url)
    arn = workflow_arn(workflow)
    run_id = run_id or f"run-{datetime.datetime.now(datetime.timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    started_by = f"mwaa-local/{run_id}"[:128]
    tasks: list[str] = []
    while len(tasks) < workers:
        out = ecs.run_task(
            cluster=CLUSTER, taskDefinition="airflow-worker", launchType="FARGATE", count=min(10, workers - len(tasks)), startedBy=started_by
        )
        tasks += [t["taskArn"] for t in out["tasks"]]
    now = now_iso()
    item = {
        "WorkflowArn": {"S": arn},
        "RunId": {"S": run_id},
        "Status": {"S": "RUNNING"},
        "WorkflowVersion": {"S": "1"},
        "RunType": {"S": "ON_DEMAND"},
        "CreatedAt": {"S": now},
        "StartedOn": {"S": now},
        "ModifiedAt": {"S": now},
        "Workers": {"M": {t: {"S": CLUSTER} for t in tasks}},
        "WorkerStartedBy": {"S": started_by},
        "WorkerClusters": {"SS": [CLUSTER]},
        "History": {"L": [{"M": {"Event": {"S": "Started"}, "At": {"S": now}}}]},
    }
    child_keys = []
    for i in range(children):
        c_arn, c_run, _ = seed_run(aws_url, f"{workflow}-child{i + 1}", f"{run_id}-c{i + 1}", 1)
        if child_keys_out is not None:
            child_keys_out.append((c_arn, c_run))
        child_keys.append({"M": {"WorkflowArn": {"S": c_arn}, "RunId": {"S": c_run}}})
    if child_keys:
        item["ChildRuns"] = {"L": child_keys}
        item["ChildPolicy"] = {"S": child_policy or "TERMINATE"}
    ddb.put_item(TableName=TABLE, Item=item)
    return arn, run_id, tasks


def cli_commands(api_url: str, arn: str, run_id: str) -> str:
    return "\n".join(
        [
            "  export PATH=\"$PWD/.venv/bin:$PATH\" AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_DEFAULT_REGION=us-east-1",
            f"  aws mwaa-serverless stop-workflow-run --endpoint-url {api_url} --workflow-arn {arn} --run-id {run_id}",
            f"  aws mwaa-serverless get-workflow-run --endpoint-url {api_url} --workflow-arn {arn} --run-id {run_id} --query RunDetail.RunState",
        ]
    )


# DynamoDB maps carry no order (the finalizer builds them from a hash map), so the
# tour prints an event's details in this fixed order, unknown keys last, sorted.
EVENT_DETAIL_ORDER = ("By", "RequestId", "SourceIp", "Operation", "WorkersStopped", "OrphansStopped",
                      "Policy", "Children", "Affected", "Skipped")


def event_detail_keys(event):
    keys = [k for k in event if k not in ("Event", "At")]
    rank = {k: i for i, k in enumerate(EVENT_DETAIL_ORDER)}
    return sorted(keys, key=lambda k: (rank.get(k, len(rank)), k))


def task_statuses(aws_url: str, tasks: list[str]) -> dict[str, str]:
    _, _, ecs = clients(aws_url)
    out: dict[str, str] = {}
    for i in range(0, len(tasks), 100):
        d = ecs.describe_tasks(cluster=CLUSTER, tasks=tasks[i : i + 100])
        out.update({t["taskArn"]: t["lastStatus"] for t in d["tasks"]})
        out.update({f["arn"]: "MISSING" for f in d.get("failures", [])})
    return out


def cmd_up(args) -> int:
    stack = Stack(args.aws_port, args.api_port, Path(args.log_dir))
    stopping = stack.cancel
    serving = False
    install_stop_signals(stopping)
    try:
        stack.start()
        arn, run_id, tasks = seed_run(stack.aws_url, workers=3)
        say(f"- seeded demo run {run_id}: RUNNING with {len(tasks)} ECS worker tasks")
        say(f"READY api={stack.api_url} aws={stack.aws_url}")
        say(f"DEMO workflow_arn={arn} run_id={run_id}")
        say("Stop the demo run and watch it reach STOPPED:")
        say(cli_commands(stack.api_url, arn, run_id))
        say(f"More runs: make seed WORKERS=5 CHILDREN=2 CHILD_POLICY=REQUEST_CANCEL LOCAL_AWS_PORT={args.aws_port} LOCAL_API_PORT={args.api_port}")
        say("Serving. Ctrl-C stops everything.")
        serving = True
        while not stopping.is_set():
            for p in stack.procs:
                if p.poll() is not None:
                    raise StackError(f"a stack process exited unexpectedly (status {p.returncode}); see {args.log_dir}/.")
            stopping.wait(0.5)
        say("- stopping")
        return 0
    except Interrupted:
        say("- stopping" if serving else "- interrupted while starting; stopping")
        return 0
    except StackError as e:
        print(f"local: {e}", file=sys.stderr)
        return 1
    finally:
        stack.stop()


def cmd_seed(args) -> int:
    aws_url = f"http://127.0.0.1:{args.aws_port}"
    api_url = f"http://127.0.0.1:{args.api_port}/lambda-url/run-api"
    kids: list[tuple[str, str]] = []
    try:
        arn, run_id, tasks = seed_run(aws_url, args.workflow, args.run_id, args.workers, args.children, args.child_policy, kids)
    except Exception as e:
        print(f"seed: could not reach the local stack at {aws_url} ({e.__class__.__name__}): is `make local` running?", file=sys.stderr)
        return 1
    say(f"seeded {run_id}: RUNNING, {len(tasks)} workers, {args.children} child run(s)" + (f", policy {args.child_policy}" if args.children else ""))
    say(f"RUN workflow_arn={arn} run_id={run_id}")
    for c_arn, c_run in kids:
        say(f"CHILD workflow_arn={c_arn} run_id={c_run}")
    say(cli_commands(api_url, arn, run_id))
    return 0


def aws_cli(stack: Stack, *args: str) -> dict:
    out = subprocess.run(
        [str(BIN / "aws"), "mwaa-serverless", *args, "--endpoint-url", stack.api_url, "--output", "json"],
        env=aws_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    if out.returncode != 0:
        raise StackError(f"aws mwaa-serverless {args[0]} failed: {out.stderr.strip()}")
    return json.loads(out.stdout)


def cmd_demo(args) -> int:
    stack = Stack(args.aws_port, args.api_port, Path(args.log_dir))
    install_stop_signals(stack.cancel)
    try:
        say("== Starting the local stack")
        stack.start()
        arn, run_id, tasks = seed_run(stack.aws_url, workflow="demo-etl", workers=args.workers)
        say(f"\n== Seeded run {run_id} of {arn}: RUNNING with {len(tasks)} worker tasks")
        before = task_statuses(stack.aws_url, tasks)
        for t in tasks:
            say(f"   {t.rsplit('/', 1)[-1]}  {before[t]}")

        say("\n== Stopping it with the AWS CLI")
        say(f"   $ aws mwaa-serverless stop-workflow-run --endpoint-url {stack.api_url} --workflow-arn {arn} --run-id {run_id}")
        t0 = time.monotonic()
        out = aws_cli(stack, "stop-workflow-run", "--workflow-arn", arn, "--run-id", run_id)
        say(f"   → Status {out['Status']}")

        say("\n== Watching with get-workflow-run until STOPPED")
        state, seen = None, None
        while time.monotonic() - t0 < args.timeout:
            state = aws_cli(stack, "get-workflow-run", "--workflow-arn", arn, "--run-id", run_id)["RunDetail"]["RunState"]
            if state != seen:
                say(f"   {time.monotonic() - t0:6.2f}s  {state}")
                seen = state
            if state == "STOPPED":
                break
            time.sleep(0.2)
        elapsed = time.monotonic() - t0

        say("\n== Workers after the stop")
        after = task_statuses(stack.aws_url, tasks)
        for t in tasks:
            say(f"   {t.rsplit('/', 1)[-1]}  {before[t]} → {after[t]}")

        say("\n== The run's history")
        item = stack.ddb.get_item(TableName=TABLE, Key={"WorkflowArn": {"S": arn}, "RunId": {"S": run_id}}, ConsistentRead=True)["Item"]
        for ev in item.get("History", {}).get("L", []):
            m = ev["M"]
            extra = ", ".join(f"{k}={list(m[k].values())[0]}" for k in event_detail_keys(m))
            say(f"   {m['At']['S']}  {m['Event']['S']:<14} {extra}")

        ok = state == "STOPPED" and all(after[t] == "STOPPED" for t in tasks)
        at = {ev["M"]["Event"]["S"]: ev["M"]["At"]["S"] for ev in item.get("History", {}).get("L", [])}
        if "StopRequested" in at and "Stopped" in at:
            parse = lambda v: datetime.datetime.strptime(v, "%Y-%m-%dT%H:%M:%S.%fZ")  # noqa: E731
            recorded = (parse(at["Stopped"]) - parse(at["StopRequested"])).total_seconds()
            say(f"\n== Stop request to STOPPED: {recorded:.3f} s in the run's history; seen by the CLI after {elapsed:.2f} s")
        else:
            say(f"\n== Stop request to STOPPED: not reached; gave up after {elapsed:.2f} s")
        say(f"   function logs: {Path(args.log_dir) / 'functions.log'}")
        if not ok:
            say(f"FAILED: run state {state}, workers {sorted(set(after.values()))}")
            return 1
        say("OK: the run is STOPPED and every worker task is STOPPED")
        return 0
    except Interrupted:
        say("\n== Interrupted")
        return 130
    except StackError as e:
        print(f"demo: {e}", file=sys.stderr)
        return 1
    finally:
        stack.stop(announce="\n== Shutting down")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    def ports(sp):
        sp.add_argument("--aws-port", type=int, default=int(os.environ.get("LOCAL_AWS_PORT", 5000)))
        sp.add_argument("--api-port", type=int, default=int(os.environ.get("LOCAL_API_PORT", 9000)))

    up = sub.add_parser("up", help="run the stack in the foreground")
    ports(up)
    up.add_argument("--log-dir", default=str(ROOT / "target" / "local"))
    demo = sub.add_parser("demo", help="the guided, non-interactive tour")
    ports(demo)
    demo.add_argument("--log-dir", default=str(ROOT / "target" / "local"))
    demo.add_argument("--workers", type=int, default=4)
    demo.add_argument("--timeout", type=float, default=120)
    seed = sub.add_parser("seed", help="seed a run into a running stack")
    ports(seed)
    seed.add_argument("--workflow", default="experiment")
    seed.add_argument("--run-id", default=None)
    seed.add_argument("--workers", type=int, default=3)
    seed.add_argument("--children", type=int, default=0)
    seed.add_argument("--child-policy", choices=["TERMINATE", "REQUEST_CANCEL", "ABANDON"], default=None)
    args = p.parse_args()
    try:
        return {"up": cmd_up, "demo": cmd_demo, "seed": cmd_seed}[args.cmd](args)
    except Interrupted:
        # Only reached when the signal came while a failure was being reported;
        # the command's own cleanup has run.
        return 130


if __name__ == "__main__":
    sys.exit(main())
