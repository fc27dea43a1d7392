"""What every part of the local stack shares: where things are, the local
account's names, and how a progress line or a failure reaches the user."""

from __future__ import annotations

import os
import sys
from pathlib import Path



def project_root() -> Path:
    """The checkout the tools work on: the nearest folder holding template.yaml
    and Cargo.toml above this file (the editable install of `make venv`), else
    above the working directory (a copy installed elsewhere, run from the
    checkout), else the working directory."""
    for start in (Path(__file__).resolve().parent, Path.cwd().resolve()):
        for d in (start, *start.parents):
            if (d / "template.yaml").is_file() and (d / "Cargo.toml").is_file():
                return d
    return Path.cwd().resolve()


ROOT = project_root()
# The virtualenv the stack runs from (`make venv`): cargo-lambda, the AWS CLI.
BIN = Path(sys.executable).parent
REGION = "us-east-1"
ACCOUNT = "123456789012"
TABLE = "WorkflowRuns"
CLUSTER = "mwaa-workers"
TARGET = "AmazonMWAAServerless"


class StackError(Exception):
    """A failure the user can act on, said in one sentence."""


def say(msg: str) -> None:
    """Print a progress line. A reader that went away (`make local | head`)
    must not turn a clean shutdown into a traceback."""
    try:
        print(msg, flush=True)
    except BrokenPipeError:
        # Python would report the failed flush again at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
