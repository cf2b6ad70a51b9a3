"""One signed demo audit shared by the report and attestation tests (an audit costs ~25 s).

The run is made the way the README tells a user to: `certify keygen`, then
`certify audit builtin:tiny-chat --policy ci-smoke --key ...`, through the real CLI.
Tests that modify a run work on a copy (``run_copy``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import SignedRun


@pytest.fixture
def run_copy(signed_run: SignedRun, tmp_path: Path) -> Path:
    """A private copy of the signed run directory, free to modify."""
    dst = tmp_path / "run"
    shutil.copytree(signed_run.run_dir, dst, ignore=shutil.ignore_patterns(".lock"))
    return dst
