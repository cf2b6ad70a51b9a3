"""Page 1 of the report tells an auditor the verdict and why (issue 15, 'an auditor-grade
report'): the verdict sentence, the checks that decided it with their numbers, the
attacker and budget the policy assumed, the compute actually spent; the threat model and
budgets come before the results."""

from __future__ import annotations

import base64
import json
import re
import subprocess
from pathlib import Path

from certify._io import sha256_file
from certify.evidence import Evidence
from certify.report.executive import deciding_checks, spent, verdict_sentence
from tests.conftest import SignedRun


def _page_text(pdf: Path, first: int, last: int) -> str:
    return subprocess.run(["pdftotext", "-layout", "-f", str(first), "-l", str(last), str(pdf),
                           "-"], capture_output=True, text=True, check=True).stdout


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def test_first_page_gives_verdict_deciding_numbers_budget_and_cost(demo_run: SignedRun) -> None:
    evidence = Evidence.read(demo_run.run_dir / "evidence.json")
    assert evidence.verdict is not None and evidence.verdict.overall == "fail"
    page1 = _flat(_page_text(demo_run.run_dir / "report.pdf", 1, 1))
    failed = [c for c in evidence.verdict.checks if c.required and c.verdict == "fail"]
    required = [c for c in evidence.verdict.checks if c.required]
    assert (f"builtin:tiny-chat-immunized FAILS policy ci-smoke 1.0.0: {len(failed)} of its "
            f"{len(required)} required checks failed") in page1
    assert "The three checks that decided it" in page1
    for check in failed[:3]:  # each with the number that decided it (its CI included)
        assert check.id in page1
        observed = check.observed["worst"]
        if "rate" in observed:
            assert f"{100 * observed['rate']:.1f}%" in page1
    harmful = [c for c in evidence.cells if c.purpose == "harmful"]
    trained = sum(c.checkpoints[-1].step for c in harmful)
    allowed = sum(c.max_steps for c in harmful)
    assert trained < allowed  # early stopping spent less than the budget, and page 1 says so
    assert f"trained {trained} optimizer steps of the {allowed} their budgets allowed" in page1
    for heading in ("Attacker assumed.", "Budget granted.", "Compute spent.", "Scope."):
        assert heading in page1
    assert "up to 96 optimizer steps" in page1  # harmful-full's budget
    rest = _flat(_page_text(demo_run.run_dir / "report.pdf", 2, 3))
    assert rest.index("Threat model and budgets Wh") < rest.index("Checks check condition")


def test_deciding_checks_put_required_failures_first(signed_run: SignedRun) -> None:
    evidence = Evidence.read(signed_run.run_dir / "evidence.json")
    assert evidence.verdict is not None
    checks = evidence.verdict.checks
    flipped = [c.model_copy(update={"verdict": v, "required": r})
               for c, (v, r) in zip(checks, [("pass", True), ("fail", False),
                                             ("inconclusive", True), ("fail", True),
                                             *[("pass", True)] * (len(checks) - 4)],
                                    strict=True)]
    chosen = deciding_checks(flipped)
    assert [c.id for c in chosen] == [checks[3].id, checks[2].id, checks[0].id]
    passed = evidence.model_copy(update={"verdict": evidence.verdict.model_copy(
        update={"checks": [c.model_copy(update={"verdict": "pass"}) for c in checks]})})
    assert "PASSES policy ci-smoke" in verdict_sentence(passed)
    undecided = evidence.model_copy(update={"verdict": evidence.verdict.model_copy(
        update={"checks": [c.model_copy(update={"verdict": "inconclusive"}) for c in checks]})})
    assert "INCONCLUSIVE" in verdict_sentence(undecided)
    assert "did not complete" in verdict_sentence(evidence.model_copy(update={"verdict": None}))
    assert spent(evidence).startswith(f"{len(evidence.cells)} cells ran.")


def test_generalization_shows_the_in_domain_vs_held_out_matrix(demo_run: SignedRun) -> None:
    """Issue 15: the generalization section names the held-out categories and shows the
    in-domain vs held-out matrix, per attack run, from the check's own numbers."""
    evidence = Evidence.read(demo_run.run_dir / "evidence.json")
    assert evidence.verdict is not None
    check = next(c for c in evidence.verdict.checks if c.check == "generalization")
    matrix = check.observed["matrix"]
    held = sorted({c for m in matrix for c in m["held_out"]})
    assert held and not set(held) & {c for m in matrix for c in m["trained"]}
    html = _flat((demo_run.run_dir / "report.html").read_text(encoding="utf-8"))
    assert f"Held-out categories (left out of the attack runs' training data): " \
           f"{', '.join(held)}." in html.replace("&#39;", "'")
    for m in matrix:
        row = (f"<td>{m['attack']}</td><td>{m['seed']}</td><td>{', '.join(m['trained'])}</td>"
               f"<td>{', '.join(m['held_out'])}</td><td>{100 * m['in_domain_worst']:.1f}%</td>"
               f"<td>{100 * m['held_out_worst']:.1f}%</td>")
        assert row in html, row


def test_the_report_states_what_the_attestation_binds(signed_run: SignedRun) -> None:
    """The 'How to verify' section names the attestation's format, predicate type, subjects
    (with the evidence digest the signature covers), key and validity window."""
    text = _flat(_page_text(signed_run.run_dir / "report.pdf", 1, 99))
    section = text[text.index("The attestation"):]
    envelope = json.loads((signed_run.run_dir / "certify.intoto.jsonl").read_text())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert statement["predicateType"] in section.replace(" ", "")
    assert sha256_file(signed_run.run_dir / "evidence.json") in section.replace(" ", "")
    window = statement["predicate"]["validity"]
    assert f"{window['from']} to {window['until']}" in section
    assert "signedAt" in section
