"""The public Python API (issue 15, 'a small public Python API'): ``certify.audit`` and
``certify.verify`` with typed results, ``__all__`` tested, ``import certify`` light.

The audit call resumes a copy of the shared signed run (every cell is done), so it runs
the same pipeline as ``certify audit`` without training anything again."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import certify
from certify.errors import CertifyError
from certify.evidence import Evidence
from tests.conftest import ROOT, SignedRun


def test_all_names_resolve_and_import_certify_stays_light() -> None:
    assert sorted(certify.__all__) == ["AuditResult", "CheckOutcome", "Step", "Verification",
                                       "__version__", "audit", "verify"]
    for name in certify.__all__:
        assert getattr(certify, name) is not None, name
        assert name in dir(certify)
    with pytest.raises(AttributeError):
        certify.no_such_name  # noqa: B018
    probe = ("import sys, certify; print(sorted(m for m in ('torch', 'pydantic', 'weasyprint', "
             "'certify.api') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_audit_returns_the_typed_result_and_verify_checks_it(signed_run: SignedRun,
                                                             tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(signed_run.run_dir, run_dir, ignore=shutil.ignore_patterns(".lock"))
    signed = Evidence.read(signed_run.run_dir / "evidence.json")
    assert signed.verdict is not None

    verification = certify.verify(run_dir, signed_run.public_key)
    assert isinstance(verification, certify.Verification) and verification.ok
    assert all(isinstance(s, certify.Step) for s in verification.steps)
    assert not certify.verify(run_dir).ok  # without the signer's key nothing is verified

    result = certify.audit("builtin:tiny-chat-immunized", "ci-smoke",
                           reference="builtin:tiny-chat", out=run_dir, formats=("junit",))
    assert isinstance(result, certify.AuditResult)
    assert result.run_dir == run_dir and result.outputs["junit"] == run_dir / "junit.xml"
    assert "attestation" not in result.outputs and "html" not in result.outputs
    # The resume is recorded in the evidence, so the report.pdf the signed run left is
    # rendered again (it would embed stale evidence), though junit alone was asked for.
    assert result.outputs["pdf"] == run_dir / "report.pdf"
    assert result.verdict == signed.verdict.overall and not result.passed
    assert result.exit_code == signed_run.audit_returncode == 1
    assert [(c.id, c.verdict, c.required) for c in result.checks] == [
        (c.id, c.verdict, c.required) for c in signed.verdict.checks]
    assert all(isinstance(c, certify.CheckOutcome) and c.reason for c in result.checks)
    assert result.evidence is not None and result.evidence.run["run_id"] == signed.run["run_id"]

    with pytest.raises(CertifyError, match="unknown option"):
        certify.audit("builtin:tiny-chat", "ci-smoke", out=run_dir, devcie="cuda")
