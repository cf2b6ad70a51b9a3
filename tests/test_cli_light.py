"""The CLI stays light: --help and policy validation never import torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT, run_certify

PROBE = """
import sys
from certify.cli import main
try:
    main({args!r})
except SystemExit as e:
    code = e.code
heavy = sorted(m for m in ("torch", "transformers", "peft", "lm_eval", "weasyprint")
               if m in sys.modules)
print("HEAVY", ",".join(heavy), "CODE", code)
"""


@pytest.mark.parametrize("args", [["--help"], ["policy", "validate", "ci-smoke"],
                                  ["audit", "--help"], ["list", "attacks"]])
def test_light_commands_do_not_import_torch(args: list[str]) -> None:
    out = subprocess.run([sys.executable, "-c", PROBE.format(args=args)], capture_output=True,
                         text=True, cwd=ROOT, timeout=120)
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("HEAVY")][-1]
    heavy, code = line.split("HEAVY ")[1].split(" CODE ")
    assert code.strip() in ("0", "None")
    assert heavy.strip() == "", f"{args} imported {heavy}"


def test_every_command_has_help() -> None:
    from certify.cli import COMMANDS

    for name in COMMANDS:
        out = run_certify(name, "--help")
        assert out.returncode == 0, (name, out.stderr)
        assert "Usage:" in out.stdout


def test_unknown_command_is_a_usage_error() -> None:
    out = run_certify("audti")
    assert out.returncode == 2
