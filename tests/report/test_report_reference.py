"""A signed audit with a reference model: every comparison section is filled in."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from certify.attest.verify import verify_run
from certify.conductor.collect import policy_of
from certify.evidence import Evidence
from certify.report.view import build
from tests.conftest import run_certify
from tests.report.conftest import SignedRun


@pytest.mark.slow
def test_report_with_reference_shows_both_models(signed_run: SignedRun, tmp_path: Path) -> None:
    run = tmp_path / "run"
    out = run_certify("audit", "builtin:tiny-chat", "--reference", "builtin:tiny-chat",
                      "--policy", "ci-smoke", "--out", str(run), "--key",
                      str(signed_run.private_key), "--quiet")
    assert out.returncode in (0, 1), out.stderr
    evidence = Evidence.read(run / "evidence.json")
    assert evidence.models["reference"] is not None
    view = build(run, evidence, (run / "evidence.json").read_bytes(), policy_of(evidence),
                 "signer")
    assert view.curves and all({s.role for s in c.series} == {"candidate", "reference"}
                               for c in view.curves)
    sections = {s.key: s for s in view.conditions}
    for key in ("resistance_strong", "resistance_weak", "stability", "validity"):
        assert sections[key].verdict != "NOT ASSESSED", key
    weak = next(table for row, table in sections["resistance_weak"].checks)
    assert weak is not None and "ratio" in weak.columns
    text = subprocess.run(["pdftotext", str(run / "report.pdf"), "-"], capture_output=True,
                          text=True, check=True).stdout
    assert "reference seed 0" in text
    assert json.loads((run / "evidence.json").read_bytes())["models"]["reference"]["root_digest"] \
        in text.replace("\n", "")
    assert verify_run(run, signed_run.public_key, model="builtin:tiny-chat",
                      policy="ci-smoke").ok
