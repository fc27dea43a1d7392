"""What the environment may change about the local stack, read and checked
once, before anything is started:

    LOCAL_STREAM_MAPPING      on (default; unset or empty is on) or off: off
                              starts no local stream mapping, as if the event
                              source mapping were disabled in AWS, so runs are
                              finalized by the reconciler alone
    LOCAL_RECONCILE_PERIOD    seconds between two reconciler passes (default 10)
    LOCAL_RECONCILE_AFTER_MS  the functions' RECONCILE_AFTER_MS: a run STOPPING
                              longer than this is finalized by the reconciler
                              (default 5000; the function accepts 1000..86400000)
    AUTHZ_POLICY_FILE         a Cedar policy set (docs/authorization.md) run-api
                              authorizes with instead of the shipped default
                              policy, read at start and again every
                              LOCAL_AUTHZ_REFRESH_S seconds (edit it while the
                              stack runs); unset or empty: the default policy

A value that makes no sense is refused with one sentence (`StackError`)."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Mapping

from .common import StackError

STREAM_MAPPING_VAR = "LOCAL_STREAM_MAPPING"
PERIOD_VAR = "LOCAL_RECONCILE_PERIOD"
AFTER_VAR = "LOCAL_RECONCILE_AFTER_MS"
POLICY_FILE_VAR = "AUTHZ_POLICY_FILE"
# How often run-api reads AUTHZ_POLICY_FILE again, locally (deployed: the
# template's AuthzRefreshSeconds).
LOCAL_AUTHZ_REFRESH_S = 2

DEFAULT_PERIOD_S = 10.0
DEFAULT_AFTER_MS = 5000
PERIOD_RANGE_S = (0.1, 3600.0)
# RECONCILE_AFTER_MS's bounds in src/config.rs.
AFTER_RANGE_MS = (1000, 86_400_000)


@dataclass(frozen=True)
class LocalSettings:
    stream_mapping: bool = True
    reconcile_period_s: float = DEFAULT_PERIOD_S
    reconcile_after_ms: int = DEFAULT_AFTER_MS
    # An absolute path, or None (the shipped default policy).
    policy_file: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "LocalSettings":
        env = os.environ if env is None else env
        return cls(
            stream_mapping=parse_stream_mapping(env.get(STREAM_MAPPING_VAR)),
            reconcile_period_s=parse_period(env.get(PERIOD_VAR)),
            reconcile_after_ms=parse_after_ms(env.get(AFTER_VAR)),
            policy_file=parse_policy_file(env.get(POLICY_FILE_VAR)),
        )


def _unset(value: str | None) -> bool:
    return value is None or value.strip() == ""


def parse_stream_mapping(value: str | None) -> bool:
    """True (the mapping runs) for unset, empty or `on`; False for `off`."""
    if _unset(value):
        return True
    v = value.strip().lower()
    if v in ("on", "off"):
        return v == "on"
    raise StackError(f"{STREAM_MAPPING_VAR}={value!r} is not understood: use on (the default) or off.")


def parse_period(value: str | None) -> float:
    if _unset(value):
        return DEFAULT_PERIOD_S
    lo, hi = PERIOD_RANGE_S
    try:
        period = float(value)
    except ValueError:
        period = math.nan
    if not (lo <= period <= hi):
        raise StackError(f"{PERIOD_VAR}={value!r} must be a number of seconds from {lo:g} to {hi:g} (default {DEFAULT_PERIOD_S:g}).")
    return period


def parse_after_ms(value: str | None) -> int:
    if _unset(value):
        return DEFAULT_AFTER_MS
    lo, hi = AFTER_RANGE_MS
    v = value.strip()
    if not re.fullmatch(r"[0-9]+", v) or not (lo <= int(v) <= hi):
        raise StackError(f"{AFTER_VAR}={value!r} must be a whole number of milliseconds from {lo} to {hi} (default {DEFAULT_AFTER_MS}).")
    return int(v)


def parse_policy_file(value: str | None) -> str | None:
    """The policy file as an absolute path (relative to the current
    directory, where make runs), or None when unset. The file must exist; its
    content is the function's to judge (an invalid set denies every request,
    and its log says why; `make check-policy FILE=...` says it beforehand)."""
    if _unset(value):
        return None
    path = os.path.abspath(os.path.expanduser(value.strip()))
    if "," in path:
        raise StackError(f"{POLICY_FILE_VAR}={value!r}: the path may not contain a comma (the functions' environment is a comma-separated list).")
    if not os.path.isfile(path):
        raise StackError(f"{POLICY_FILE_VAR}={value!r}: no such file ({path}).")
    return path
