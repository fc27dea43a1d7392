"""The whole service on this machine: `make local`, `make demo`, `make seed`.

    up     moto (DynamoDB, DynamoDB Streams, ECS, EventBridge, SQS) + the four functions under
           `cargo lambda watch` + the local stream mapping (unless
           LOCAL_STREAM_MAPPING=off) + the reconciler every
           LOCAL_RECONCILE_PERIOD seconds; seeds a demo run, prints READY and
           the AWS CLI commands, serves until Ctrl-C/SIGTERM.
    demo   the guided tour: up, stop a seeded run with the real AWS CLI, watch
           it reach STOPPED, show the workers and the run's history, shut down.
    seed   add a run (workers, child runs, child policy) to a running stack.
    events print the run events of a running stack as they arrive (EventBridge's
           default bus in moto, through the queue a rule on it feeds).
    sam-up `make sam-local`: as `up`, with run-api behind `sam local start-api`
           and the finalizer and the reconciler behind `sam local start-lambda`
           (localdev.sam; needs Docker, the SAM build and the image).

Run it as `python -m localdev` with the project's virtualenv python (`make
venv` creates it and installs this package into it); the Makefile targets do.
The work is done by the other modules of the package (localdev/__init__.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from pathlib import Path

from localdev.common import ROOT, StackError, say
from localdev.demo import cmd_demo
from localdev.events import tail as tail_events
from localdev.sam import SamStack
from localdev.seed import check_seed_args, cli_commands, seed_run
from localdev.supervisor import Interrupted, Stack, install_stop_signals


def cmd_up(args) -> int:
    if args.cmd == "sam-up":
        stack = SamStack(args.aws_port, args.api_port, args.lambda_port, Path(args.log_dir))
    else:
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
        sam = " SAM_LOCAL=1" if args.cmd == "sam-up" else ""
        say(f"More runs: make seed WORKERS=5 CHILDREN=2 CHILD_POLICY=REQUEST_CANCEL LOCAL_AWS_PORT={args.aws_port} LOCAL_API_PORT={args.api_port}{sam}")
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
        print(f"{'sam-local' if args.cmd == 'sam-up' else 'local'}: {e}", file=sys.stderr)
        return 1
    finally:
        stack.stop()


def cmd_seed(args) -> int:
    aws_url = f"http://127.0.0.1:{args.aws_port}"
    # `make sam-local` serves the API at the root (sam local start-api).
    api_url = f"http://127.0.0.1:{args.api_port}" + ("" if args.sam else "/lambda-url/run-api")
    kids: list[tuple[str, str]] = []
    try:
        args.workers, args.children, args.child_policy = check_seed_args(args.workers, args.children, args.child_policy)
    except StackError as e:
        print(f"seed: {e}", file=sys.stderr)
        return 1
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


def cmd_events(args) -> int:
    stopping = threading.Event()
    install_stop_signals(stopping)
    try:
        return tail_events(f"http://127.0.0.1:{args.aws_port}", stopping)
    except Interrupted:
        return 0


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m localdev", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    def ports(sp):
        sp.add_argument("--aws-port", type=int, default=int(os.environ.get("LOCAL_AWS_PORT", 5000)))
        sp.add_argument("--api-port", type=int, default=int(os.environ.get("LOCAL_API_PORT", 9000)))

    up = sub.add_parser("up", help="run the stack in the foreground")
    ports(up)
    up.add_argument("--log-dir", default=str(ROOT / "target" / "local"))
    sam_up = sub.add_parser("sam-up", help="run the stack in the foreground, the functions in SAM's containers")
    ports(sam_up)
    sam_up.add_argument("--lambda-port", type=int, default=int(os.environ.get("LOCAL_LAMBDA_PORT", 9001)))
    sam_up.add_argument("--log-dir", default=str(ROOT / "target" / "sam-local" / "stack"))
    demo = sub.add_parser("demo", help="the guided, non-interactive tour")
    ports(demo)
    demo.add_argument("--log-dir", default=str(ROOT / "target" / "local"))
    demo.add_argument("--workers", type=int, default=4)
    demo.add_argument("--timeout", type=float, default=120)
    seed = sub.add_parser("seed", help="seed a run into a running stack")
    ports(seed)
    seed.add_argument("--workflow", default="experiment")
    seed.add_argument("--run-id", default=None)
    seed.add_argument("--sam", action="store_true", help="the stack is `make sam-local`'s")
    # Strings, checked by check_seed_args: a bad value gets one sentence and
    # exit status 1, not argparse's usage text.
    seed.add_argument("--workers", default="3")
    seed.add_argument("--children", default="0")
    seed.add_argument("--child-policy", default=None)
    events = sub.add_parser("events", help="print the run events of a running stack as they arrive")
    ports(events)
    args = p.parse_args()
    try:
        return {"up": cmd_up, "sam-up": cmd_up, "demo": cmd_demo, "seed": cmd_seed, "events": cmd_events}[args.cmd](args)
    except Interrupted:
        # Only reached when the signal came while a failure was being reported;
        # the command's own cleanup has run.
        return 130


if __name__ == "__main__":
    sys.exit(main())
