"""One signed demo audit shared by the report and attestation tests (an audit costs ~25 s).

The run is made the way the README tells a user to: `certify keygen`, then
`certify audit builtin:tiny-chat --policy ci-smoke --key ...`, through the real CLI.
Tests that modify a run work on a copy (``run_copy``).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import run_certify


@dataclass(frozen=True)
class SignedRun:
    run_dir: Path
    private_key: Path
    public_key: Path
    audit_stdout: str
    audit_returncode: int


@pytest.fixture(scope="session")
def signed_run(tmp_path_factory: pytest.TempPathFactory, tiny_chat: Path) -> SignedRun:
    root = tmp_path_factory.mktemp("signed-run")
    keys = run_certify("keygen", "--out", str(root / "keys"))
    assert keys.returncode == 0, keys.stderr
    run_dir = root / "run"
    out = run_certify("audit", "builtin:tiny-chat", "--policy", "ci-smoke", "--out", str(run_dir),
                      "--key", str(root / "keys" / "certify.key"), "--quiet")
    assert out.returncode in (0, 1), out.stderr
    return SignedRun(run_dir, root / "keys" / "certify.key", root / "keys" / "certify.pub",
                     out.stdout, out.returncode)


@pytest.fixture
def run_copy(signed_run: SignedRun, tmp_path: Path) -> Path:
    """A private copy of the signed run directory, free to modify."""
    dst = tmp_path / "run"
    shutil.copytree(signed_run.run_dir, dst, ignore=shutil.ignore_patterns(".lock"))
    return dst
