"""With --json, a failing command prints exactly one JSON error object on stdout
(kind, message, exit code) and exits with the same code as without --json."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest

from tests.conftest import ROOT, run_certify

BAD_POLICY = str(ROOT / "tests" / "policies" / "bad" / "duplicate-attack-ids.yaml")

# (command, arguments, expected exit code, expected kind); {tmp} is a fresh directory.
CASES = [
    ("audit", ["audit", "builtin:tiny-chat", "--policy", "no-such-policy"], 2, "UsageError"),
    ("audit", ["audit", "builtin:tiny-chat", "--policy", BAD_POLICY], 2, "PolicyError"),
    ("audit", ["audit", "builtin:no-such-model", "--policy", "ci-smoke", "--dry-run"], 2,
     "ModelError"),
    ("audit", ["audit", "builtin:tiny-chat"], 2, "UsageError"),
    ("audit", ["audit", "builtin:tiny-chat", "--policy", "ci-smoke", "--resume"], 2,
     "UsageError"),
    ("merge", ["merge", "{tmp}/not-a-run", "--out", "{tmp}/merged"], 2, "InputError"),
    ("verify", ["verify", "{tmp}/not-a-run"], 2, "InputError"),
    ("list", ["list", "no-such-kind"], 2, "UsageError"),
    ("replay", ["replay", "{tmp}/not-a-run"], 2, "UsageError"),
    ("diff", ["diff", "{tmp}/old-run", "{tmp}/new-run"], 2, "UsageError"),
]


def commands_with_json() -> set[str]:
    from certify.cli import cli

    names = set()
    for name in cli.list_commands(click.Context(cli)):
        command = cli.get_command(click.Context(cli), name)
        if command is not None and any("--json" in p.opts for p in command.params):
            names.add(name)
    return names


def test_every_command_with_json_has_an_error_case() -> None:
    assert commands_with_json() == {name for name, *_ in CASES}


@pytest.mark.parametrize("name,args,code,kind", CASES, ids=[" ".join(c[1][:3]) for c in CASES])
def test_json_errors_are_one_object_on_stdout_with_the_same_exit_code(
        tmp_path: Path, name: str, args: list[str], code: int, kind: str) -> None:
    args = [a.format(tmp=tmp_path) for a in args]
    plain = run_certify(*args)
    assert plain.returncode == code, plain.stderr
    assert plain.stdout.strip() == ""
    out = run_certify(*args, "--json")
    assert out.returncode == code, out.stderr
    error = json.loads(out.stdout)["error"]  # the whole of stdout is one JSON object
    assert error["exit_code"] == code and error["kind"] == kind
    assert error["message"] and error["message"] in out.stderr  # humans still read stderr
    if kind == "PolicyError":
        assert error["problems"]


def test_json_after_the_double_dash_is_an_argument_not_the_flag() -> None:
    from certify.cli import json_requested

    assert json_requested(["list", "attacks", "--json"])
    assert json_requested(["-v", "audit", "m", "--json"])
    assert not json_requested(["audit", "m", "--", "--json"])
    assert not json_requested(["policy", "validate", "x", "--json"])  # no --json there
