"""Audits shared by the report and attestation tests (each costs about 25-30 s).

The signed run is made the way the README tells a user to: `certify keygen`, then
`certify audit builtin:tiny-chat-immunized --reference builtin:tiny-chat --policy ci-smoke
--key ...` (the README demo), through the real CLI.
Tests that modify a run work on a copy (``run_copy``). The disclosure run uses the
new attacks (cipher, search, poisoned mix) so the report has everything to disclose.
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


DISCLOSURE_POLICY = Path(__file__).resolve().parent.parent / "policies" / "report-disclosures.yaml"


@pytest.fixture(scope="session")
def disclosure_run(tmp_path_factory: pytest.TempPathFactory, tiny_chat: Path) -> Path:
    """One audit (about 30 s) whose evidence carries every disclosure the report makes:
    covert screening, an unlearned cipher, search trials, a poisoned mix, overlap, an
    early stop and validated judges (tests/policies/report-disclosures.yaml)."""
    from certify.conductor import AuditOptions, audit

    out = tmp_path_factory.mktemp("disclosures") / "run"
    result = audit(AuditOptions(model="builtin:tiny-chat", policy=str(DISCLOSURE_POLICY), out=out,
                                formats=("pdf", "html", "md")))
    assert result.evidence.run["status"] == "complete"
    return out
