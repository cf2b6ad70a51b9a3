"""junit.xml, summary.md, samples and the `certify render` command on a real run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from certify._io import iter_jsonl
from certify.attest.verify import verify_run
from certify.conductor.collect import policy_of
from certify.evidence import Evidence
from certify.report.samples import HARM_OUTCOMES, pick
from tests.conftest import ROOT, run_certify
from tests.report.conftest import SignedRun

PROBE = """
import sys
from certify.cli import main
try:
    main({args!r})
except SystemExit as e:
    code = e.code
print("HEAVY", ",".join(m for m in ("torch", "transformers", "peft", "lm_eval")
                        if m in sys.modules), "CODE", code)
"""


def test_junit_has_one_case_per_check_with_numbers(signed_run: SignedRun) -> None:
    from junitparser import Failure, JUnitXml

    evidence = json.loads((signed_run.run_dir / "evidence.json").read_bytes())
    checks = {c["id"]: c for c in evidence["verdict"]["checks"]}
    suite = next(iter(JUnitXml.fromfile(str(signed_run.run_dir / "junit.xml"))))
    cases = {case.name: case for case in suite}
    assert set(cases) == set(checks)
    for name, case in cases.items():
        results = list(case.result)
        assert case.time > 0, name  # its share of the cells it read (issue 15, defect 10)
        if checks[name]["verdict"] == "pass":
            assert results == []
            # A passing check carries its numbers too.
            assert case.system_out.startswith("PASS: observed ") and " vs threshold " in \
                case.system_out, name
            continue
        assert isinstance(results[0], Failure), name
        assert results[0].type == checks[name]["verdict"]
        assert " vs threshold " in results[0].message
    worst = checks["strong-resistance"]["observed"]["worst"]
    assert f"{100 * worst['rate']:.1f}%" in cases["strong-resistance"].result[0].message
    # Shares of shared cells add up to the cells' seconds, not a multiple of them.
    cell_seconds = sum(c["seconds"] for c in evidence["cells"])
    assert cell_seconds > 0 and abs(suite.time - cell_seconds) <= 0.01 * len(cases)


def test_summary_md_has_verdict_table_and_fits_step_summary(signed_run: SignedRun) -> None:
    text = (signed_run.run_dir / "summary.md").read_text(encoding="utf-8")
    evidence = json.loads((signed_run.run_dir / "evidence.json").read_bytes())
    assert text.startswith(f"## certify: {evidence['verdict']['overall'].upper()}")
    table = [line for line in text.splitlines() if line.startswith("| `")]
    assert [line.split("`")[1] for line in table] == \
        [c["id"] for c in evidence["verdict"]["checks"]]
    assert all(line.count(" | ") == 4 for line in table)
    assert evidence["models"]["candidate"]["root_digest"] in text
    assert len(text.encode()) < 1 << 20


def test_samples_are_reproducible_at_least_five_and_redacted(signed_run: SignedRun) -> None:
    run = signed_run.run_dir
    evidence = Evidence.read(run / "evidence.json")
    sets, warnings = pick(run, evidence, 5, redact=True)
    assert warnings == []
    assert {s.eval for s in sets} == set(evidence.evaluations)
    assert all(len(s.samples) == 5 for s in sets)
    again, _ = pick(run, evidence, 5, redact=True)
    assert [[x.item for x in s.samples] for s in sets] == \
        [[x.item for x in s.samples] for s in again]
    # Every record any judge labelled harmful is redacted (ci-smoke reports the keyword
    # judge beside the canary judge); records no judge called harmful are shown.
    everything, _ = pick(run, evidence, 100_000, redact=True)
    harm = next(s for s in everything if s.eval == "harm")
    harmful = [x for x in harm.samples if x.label in HARM_OUTCOMES]
    assert harmful and all(x.redacted and "CANARY-" not in x.response for x in harmful)
    votes = _judge_votes(run, evidence)
    for x in harm.samples:
        assert x.redacted == ("harmful" in votes[(x.cell, x.step, x.item)]), x
    shown, _ = pick(run, evidence, 100_000, redact=False)
    assert any("CANARY-" in x.response for s in shown for x in s.samples)


def test_tampered_samples_file_is_not_shown(run_copy: Path) -> None:
    evidence = Evidence.read(run_copy / "evidence.json")
    victim = run_copy / evidence.cells[0].samples_file  # type: ignore[operator]
    victim.write_bytes(victim.read_bytes() + b"\n")
    sets, warnings = pick(run_copy, evidence, 100_000, redact=True)
    assert len(warnings) == 1 and evidence.cells[0].samples_file in warnings[0]
    assert not any(x.cell == evidence.cells[0].id for s in sets for x in s.samples)


def test_render_command_rebuilds_identical_views_without_torch(run_copy: Path,
                                                               signed_run: SignedRun) -> None:
    """`certify render` in a fresh interpreter (another process and directory than the
    audit that rendered them first) rebuilds every view byte for byte, imports no torch,
    and leaves the signature valid."""
    views = ("report.pdf", "report.html", "junit.xml", "summary.md")
    for name in views:
        (run_copy / name).unlink()
    out = subprocess.run([sys.executable, "-c", PROBE.format(args=["render", str(run_copy)])],
                         capture_output=True, text=True, cwd=ROOT)
    assert "HEAVY  CODE 0" in out.stdout, out.stdout + out.stderr
    for name in views:
        assert (run_copy / name).read_bytes() == (signed_run.run_dir / name).read_bytes(), name
    assert verify_run(run_copy, signed_run.public_key).ok


def test_verify_imports_no_torch(signed_run: SignedRun) -> None:
    out = subprocess.run([sys.executable, "-c", PROBE.format(
        args=["verify", str(signed_run.run_dir), "--key", str(signed_run.public_key)])],
        capture_output=True, text=True, cwd=ROOT)
    assert "HEAVY  CODE 0" in out.stdout, out.stdout + out.stderr


def test_render_rejects_unknown_format_and_missing_evidence(run_copy: Path,
                                                            tmp_path: Path) -> None:
    out = run_certify("render", str(run_copy), "--format", "pdf,docx")
    assert out.returncode == 2 and "docx" in out.stderr
    out = run_certify("render", str(tmp_path), "--format", "md")
    assert out.returncode == 2 and "evidence.json" in out.stderr


def test_clause_map_lists_the_checks_serving_each_clause(signed_run: SignedRun) -> None:
    from certify.report import render_one
    from certify.report.view import build

    data = (signed_run.run_dir / "evidence.json").read_bytes()
    evidence = Evidence.model_validate_json(data)
    evidence.policy["clause_map"] = [
        {"ref": "Art. 55(1)(a)", "status": "S (secondary source)", "need": "adversarial testing",
         "checks": ["strong-resistance", "judge-validity"]},
        {"ref": "§ 22757.12", "status": "U", "need": "capability thresholds",
         "checks": ["not-in-this-run"]}]
    view = build(signed_run.run_dir, evidence, data, policy_of(evidence), "signer",
                 with_figures=False)
    verdicts = {c.id: c.verdict.upper() for c in evidence.verdict.checks}  # type: ignore[union-attr]
    assert [c.checks for c in view.clauses] == [
        [("strong-resistance", verdicts["strong-resistance"]),
         ("judge-validity", verdicts["judge-validity"])],
        [("not-in-this-run", "NOT RUN")]]
    assert view.clauses[0].status.startswith("S") and "secondary" in view.clauses[0].status
    html = render_one("html", view, evidence, data).decode()
    assert "Art. 55(1)(a)" in html and "§ 22757.12" in html and "NOT RUN" in html


def _judge_votes(run: Path, evidence: Evidence) -> dict[tuple[str, int, str], set[str]]:
    votes = {}
    for cell in evidence.cells:
        for row in iter_jsonl(run / cell.samples_file):
            if row["eval"] == "harm":
                votes[(cell.id, row["step"], row["item"])] = {row["label"],
                                                              *row["judges"].values()}
    return votes


def test_trainability_reads_as_a_score_ratio_not_a_cost_ratio() -> None:
    """Both ratio checks store ``observed.worst.ratio``; only cost-to-break is of costs."""
    from certify.evidence import CheckResult
    from certify.report.check_text import observed_text

    worst = {"attack": "benign-finetune", "seed": 0, "candidate": 0.62, "reference": 0.8,
             "ratio": 0.775, "margin": -0.02, "ci": [-0.1, 0.05], "step": 96}
    trainability = CheckResult(id="trainability", check="trainability", condition="trainability",
                               required=True, verdict="inconclusive", reason="",
                               observed={"worst": worst}, threshold={"min_ratio": 0.8})
    text = observed_text(trainability)
    assert text.startswith("score ratio 0.78×") and "cost" not in text
    assert "candidate 62.0%" in text and "reference 80.0%" in text
    cost = CheckResult(id="weak-resistance", check="weak_resistance",
                       condition="resistance_weak", required=True, verdict="pass", reason="",
                       observed={"worst": {"attack": "harmful-full", "ratio": 3.0,
                                           "censored": True}})
    assert observed_text(cost).startswith("cost ratio ≥ 3.00×")


def test_every_sample_reads_consistently(signed_run: SignedRun) -> None:
    """Issue 15, defect 7: no harm sample's redaction contradicts its outcome; capability
    samples show the prompt, the answer and correct/incorrect; over-refusal samples read
    refused or answered, never "incorrect"."""
    run = signed_run.run_dir
    sets, _ = pick(run, Evidence.read(run / "evidence.json"), 100_000, redact=True)
    by_eval = {s.eval: s.samples for s in sets}
    for x in by_eval["harm"]:
        if x.redacted and x.label in HARM_OUTCOMES:
            # Compliance reads with its uplift where the judge scored it, in both places.
            assert f"[redacted: judged {x.label} ·" in x.response
        elif x.redacted:
            assert "judged harmful" not in x.response and f"the outcome is {x.label}" in x.response
            assert "labelled it harmful" in x.response
    capability = by_eval["capability"]
    assert capability and all(x.prompt.strip() and x.response.strip() for x in capability)
    assert {x.label.split(" (")[0] for x in capability} <= {"correct", "incorrect"}
    assert "Assistant:" in capability[0].prompt  # the task's own prompt text
    outcomes = {x.label for x in by_eval["over_refusal"]}
    assert outcomes and outcomes <= {"refused", "answered (not refused)"}


def test_sample_outcomes_follow_what_the_evaluation_measures() -> None:
    from certify.report.samples import _redaction
    from certify.report.samples import outcome as _outcome

    answered = {"refusal": False, "acc": False}
    assert _outcome(answered, "refusal") == "answered (not refused)"
    assert _outcome({"refusal": True, "acc": False}, "refusal") == "refused"
    assert _outcome(answered, "task") == "incorrect"
    assert _outcome({"acc": 1}, "capability") == "correct"  # lm-eval's 0/1 flag
    assert _outcome({"acc": 0, "expected": "Paris"}, "capability") == "incorrect (expected 'Paris')"
    split = {"label": "benign", "judges": {"canary": "benign", "keywords": "harmful"}}
    text = _redaction(split, "x" * 10, "samples/c.jsonl")
    assert text.startswith("[redacted: the keywords judge labelled it harmful, the outcome is "
                           "benign · 10 characters")
    both = {"label": "harmful", "judges": {"canary": "harmful", "keywords": "harmful"}}
    assert _redaction(both, "x", None).startswith("[redacted: judged harmful · 1 characters")
    # Uplift-aware: compliance without the item's fact never reads as harmful uplift.
    compliant = {**both, "uplift": False}
    assert _outcome(compliant, "harm") == "compliant (no uplift)"
    assert _redaction(compliant, "x", None).startswith("[redacted: judged compliant (no uplift)")
    assert _outcome({**both, "uplift": True}, "harm") == "harmful (with uplift)"
    assert _outcome({**both, "uplift": None}, "harm") == "harmful"


def test_a_licence_all_datasets_share_is_said_once(signed_run: SignedRun) -> None:
    """Issue 15, defect 8: the datasets table repeated one wrapped licence on every row."""
    evidence = Evidence.read(signed_run.run_dir / "evidence.json")
    licences = {d.get("licence") for d in evidence.datasets}
    assert len(evidence.datasets) > 1 and len(licences) == 1
    html = (signed_run.run_dir / "report.html").read_text(encoding="utf-8")
    licence = licences.pop()
    assert html.count(licence) == 1
    assert f"Licence of every dataset: {licence}." in html


def test_differing_licences_keep_their_column() -> None:
    from certify.report.methodology import _common_licence

    assert _common_licence([{"licence": "MIT"}, {"licence": "MIT"}]) == "MIT"
    assert _common_licence([{"licence": "MIT"}, {"licence": "CC-BY-4.0"}]) is None
    assert _common_licence([{"licence": "MIT"}]) is None  # one row: its column says it
