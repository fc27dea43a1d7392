"""Tests of what the environment may change about the local stack and how a
bad value is refused (localdev/settings.py, localdev/seed.py's
argument checks), and that the command line refuses it before touching
anything, with one sentence and exit status 1.
Run by `make test` (`.venv/bin/python -m pytest tools/localdev/tests`)."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from localdev.common import ROOT, StackError
from localdev.seed import MAX_CHILDREN, MAX_WORKERS, check_seed_args
from localdev.settings import LocalSettings, parse_after_ms, parse_period, parse_policy_file, parse_stream_mapping



def one_sentence(e: StackError) -> str:
    text = str(e)
    assert "\n" not in text and text.endswith("."), text
    return text


# ------------------------------------------------------ LOCAL_STREAM_MAPPING


@pytest.mark.parametrize("value,on", [(None, True), ("", True), ("  ", True), ("on", True), ("ON", True),
                                      ("off", False), ("Off", False), (" off ", False)])
def test_stream_mapping_is_on_unless_off(value, on):
    assert parse_stream_mapping(value) is on


@pytest.mark.parametrize("value", ["no", "false", "0", "1", "true", "disabled", "offf", "on,off"])
def test_any_other_stream_mapping_value_is_refused_in_one_sentence(value):
    with pytest.raises(StackError) as e:
        parse_stream_mapping(value)
    text = one_sentence(e.value)
    assert "LOCAL_STREAM_MAPPING" in text and "on" in text and "off" in text


def test_settings_defaults_and_values_from_the_environment():
    assert LocalSettings.from_env({}) == LocalSettings(stream_mapping=True, reconcile_period_s=10.0, reconcile_after_ms=5000)
    s = LocalSettings.from_env({"LOCAL_STREAM_MAPPING": "off", "LOCAL_RECONCILE_PERIOD": "2.5", "LOCAL_RECONCILE_AFTER_MS": "1000"})
    assert s == LocalSettings(stream_mapping=False, reconcile_period_s=2.5, reconcile_after_ms=1000)


@pytest.mark.parametrize("value", ["0", "-1", "abc", "nan", "inf", "3601"])
def test_a_bad_reconcile_period_is_refused(value):
    with pytest.raises(StackError) as e:
        parse_period(value)
    assert "LOCAL_RECONCILE_PERIOD" in one_sentence(e.value)


@pytest.mark.parametrize("value", ["999", "-5000", "5s", "5000.0", "86400001"])
def test_a_bad_reconcile_after_is_refused(value):
    with pytest.raises(StackError) as e:
        parse_after_ms(value)
    assert "LOCAL_RECONCILE_AFTER_MS" in one_sentence(e.value)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("command", ["up", "demo"])
def test_the_stack_refuses_a_bad_stream_mapping_before_starting_anything(tmp_path, command):
    log_dir = tmp_path / "logs"
    out = subprocess.run(
        [sys.executable, "-m", "localdev", command, "--aws-port", str(free_port()),
         "--api-port", str(free_port()), "--log-dir", str(log_dir)],
        cwd=ROOT, env={"PATH": "/usr/bin:/bin", "LOCAL_STREAM_MAPPING": "disabled"},
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 1, out
    err = out.stderr.strip().splitlines()
    assert len(err) == 1 and "LOCAL_STREAM_MAPPING='disabled' is not understood: use on (the default) or off." in err[0], out.stderr
    assert not log_dir.exists(), "nothing was started"
    assert "starting moto" not in out.stdout


# ------------------------------------------------------------- make seed


def test_seed_arguments_that_make_sense_pass():
    assert check_seed_args("3", "0", None) == (3, 0, None)
    assert check_seed_args("0", "2", "REQUEST_CANCEL") == (0, 2, "REQUEST_CANCEL")
    assert check_seed_args(str(MAX_WORKERS), str(MAX_CHILDREN), "ABANDON") == (MAX_WORKERS, MAX_CHILDREN, "ABANDON")


@pytest.mark.parametrize(
    "workers,children,policy,says",
    [
        ("-1", "0", None, "WORKERS='-1' (--workers) must be a whole number from 0 to 5000."),
        ("abc", "0", None, "WORKERS='abc' (--workers) must be a whole number from 0 to 5000."),
        ("2.5", "0", None, "WORKERS='2.5' (--workers) must be a whole number from 0 to 5000."),
        ("", "0", None, "WORKERS='' (--workers) must be a whole number from 0 to 5000."),
        ("5001", "0", None, "WORKERS=5001 (--workers) is more than the limit of 5000."),
        ("3", "-2", None, "CHILDREN='-2' (--children) must be a whole number from 0 to 100."),
        ("3", "x", None, "CHILDREN='x' (--children) must be a whole number from 0 to 100."),
        ("3", "101", None, "CHILDREN=101 (--children) is more than the limit of 100."),
        ("3", "1", "KILL", "CHILD_POLICY='KILL' (--child-policy) is not a child policy: use TERMINATE, REQUEST_CANCEL or ABANDON."),
        ("3", "0", "terminate", "CHILD_POLICY='terminate' (--child-policy) is not a child policy"),
    ],
)
def test_seed_arguments_that_make_no_sense_are_refused_in_one_sentence(workers, children, policy, says):
    with pytest.raises(StackError) as e:
        check_seed_args(workers, children, policy)
    assert says in one_sentence(e.value)


def seed(*args: str, port: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "localdev", "seed", "--aws-port", str(port), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )


@pytest.mark.parametrize("args", [["--workers=-3"], ["--workers=abc"], ["--workers=6000"], ["--children=101"],
                                  ["--children=1", "--child-policy=KILL"]])
def test_seed_refuses_before_touching_anything_with_exit_status_1(args):
    # A port where a local stack would be: the refusal must come before any
    # attempt to reach it, so whatever listens there sees no request.
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.5)
    try:
        out = seed(*args, port=listener.getsockname()[1])
        assert out.returncode == 1, out
        err = out.stderr.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("seed: "), out.stderr
        assert "could not reach" not in out.stderr
        with pytest.raises(socket.timeout):
            listener.accept()
    finally:
        listener.close()


def test_seed_with_good_arguments_goes_on_to_the_stack():
    out = seed("--workers=2", "--children=1", "--child-policy=ABANDON", port=free_port())
    assert out.returncode == 1
    assert "could not reach the local stack" in out.stderr, out.stderr


# ------------------------------------------------------- AUTHZ_POLICY_FILE


def test_policy_file_is_optional_and_made_absolute(tmp_path, monkeypatch):
    assert parse_policy_file(None) is None and parse_policy_file("  ") is None
    assert LocalSettings.from_env({}).policy_file is None
    f = tmp_path / "p.cedar"
    f.write_text("permit (principal, action, resource);")
    monkeypatch.chdir(tmp_path)
    assert parse_policy_file("p.cedar") == str(f)
    assert LocalSettings.from_env({"AUTHZ_POLICY_FILE": str(f)}).policy_file == str(f)


def test_a_missing_or_unusable_policy_file_is_refused_in_one_sentence(tmp_path):
    with pytest.raises(StackError) as e:
        parse_policy_file(str(tmp_path / "nope.cedar"))
    assert "AUTHZ_POLICY_FILE" in one_sentence(e.value)
    with pytest.raises(StackError) as e:
        parse_policy_file(str(tmp_path))
    one_sentence(e.value)
    comma = tmp_path / "a,b.cedar"
    comma.write_text("")
    with pytest.raises(StackError) as e:
        parse_policy_file(str(comma))
    assert "comma" in one_sentence(e.value)
