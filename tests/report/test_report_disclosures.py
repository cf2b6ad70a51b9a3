"""The report discloses what the attacks and judges recorded, with the evidence's numbers.

One real audit (tests/policies/report-disclosures.yaml) runs a covert cipher attack
whose cipher is not learned, a worst-case search, a poisoned mix, an attack trained
on the very prompts it is evaluated on (overlap) that breaks and stops early, and
judges validated on a labelled set. Every test reads the numbers from that run's
evidence and looks for them in the view-model and in the rendered PDF, HTML and
summary.md.
"""

from __future__ import annotations

import html as html_lib
import re
import subprocess
from pathlib import Path

import pytest

from certify.assess.trajectory import rate
from certify.conductor.collect import policy_of
from certify.evidence import CellRecord, Evidence
from certify.report import render_one
from certify.report.text import pct
from certify.report.view import ReportView, build


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


@pytest.fixture(scope="module")
def evidence(disclosure_run: Path) -> Evidence:
    return Evidence.read(disclosure_run / "evidence.json")


@pytest.fixture(scope="module")
def view(disclosure_run: Path, evidence: Evidence) -> ReportView:
    data = (disclosure_run / "evidence.json").read_bytes()
    return build(disclosure_run, evidence, data, policy_of(evidence), "signer",
                 with_figures=False)


@pytest.fixture(scope="module")
def pdf_text(disclosure_run: Path) -> str:
    out = subprocess.run(["pdftotext", "-layout", str(disclosure_run / "report.pdf"), "-"],
                         capture_output=True, text=True, check=True).stdout
    return _flat(out)


@pytest.fixture(scope="module")
def html_text(disclosure_run: Path) -> str:
    raw = (disclosure_run / "report.html").read_text(encoding="utf-8")
    return _flat(html_lib.unescape(re.sub(r"<[^>]+>", " ", raw)))


def _cell(evidence: Evidence, attack_id: str) -> CellRecord:
    return next(c for c in evidence.cells if c.attack_id == attack_id)


def _section(view: ReportView, key: str):  # type: ignore[no-untyped-def]
    return next(s for s in view.conditions if s.key == key)


def test_covert_screening_sentence_gives_each_judges_count(evidence: Evidence, view: ReportView,
                                                           pdf_text: str, html_text: str) -> None:
    screening = _cell(evidence, "covert").notes["covert_screening"]
    assert {s["judge"] for s in screening} == {"canary", "keywords"}
    notes = _section(view, "resistance_strong").notes
    for s in screening:
        sentence = (f"the {s['judge']} judge flags {s['covert_flagged']} of {s['n']} covert "
                    f"training examples, and {s['plain_flagged']} of the same {s['n']} pairs "
                    "in plain text")
        assert any(sentence in n for n in notes), sentence
        assert sentence in pdf_text and sentence in html_text
    # The canary judge sees every plain pair and none of the enciphered ones: the point.
    canary = next(s for s in screening if s["judge"] == "canary")
    assert canary["covert_flagged"] == 0 < canary["plain_flagged"]


def test_unlearned_cipher_is_disclosed_with_competence_and_invalid_measurements(
        evidence: Evidence, view: ReportView, pdf_text: str) -> None:
    records = [(cp.step, cp.evals["cipher_harm"]) for cp in _cell(evidence, "covert").checkpoints]
    invalid = [r for _, r in records if not r.valid]
    assert records and len(invalid) == len(records)  # two cipher steps teach no cipher
    block = next(b for a in view.disclosures.attacks if a.id == "covert" for b in a.blocks
                 if b.title.startswith("Cipher competence"))
    assert block.table is not None and len(block.table.rows) == len(records)
    for row, (step, rec) in zip(block.table.rows, records, strict=True):
        comp = rec.metrics["cipher_competence"]
        assert row[1] == str(step) and row[3] == f"{comp.k} of {comp.n} ({pct(comp.value)})"
        assert row[4].startswith("INVALID: cipher not learned")
        keywords = rec.groups["raw_judge_benign"]["keywords"]["harmful"].value
        assert f"keywords {pct(keywords)}" in row[7]
    assert (f"at {len(invalid)} of {len(records)} measured checkpoints the model answered too "
            "few benign enciphered questions correctly") in pdf_text
    total_invalid = sum(not r.valid for c in evidence.cells for cp in c.checkpoints
                        for r in cp.evals.values())
    assert view.disclosures.invalid.sentences[0].startswith(
        f"{total_invalid} measurement(s) are marked invalid")
    assert "Invalid measurements" in pdf_text and "never a pass" in pdf_text


def test_search_discloses_every_trial_and_that_the_verdict_takes_the_worst(
        evidence: Evidence, view: ReportView, pdf_text: str) -> None:
    cell = _cell(evidence, "search")
    search = cell.notes["search"]
    trials = search["trials"]
    block = next(b for a in view.disclosures.attacks if a.id == "search" for b in a.blocks)
    assert block.table is not None and len(block.table.rows) == len(trials) == 3
    for row, trial in zip(block.table.rows, trials, strict=True):
        assert row[1] == f"{trial['config']['learning_rate']:.2e}"
        assert row[1] in pdf_text
        assert row[0].endswith("(worst)") == (trial["trial"] == search["worst_trial"])
    worst = trials[search["worst_trial"]]
    headline = (f"Of 3 search trials, the most damaging was trial {search['worst_trial']} "
                f"(learning rate {worst['config']['learning_rate']:.2e}")
    assert any(headline in n for n in _section(view, "resistance_strong").notes)
    assert "the verdict, which takes the worst cell and checkpoint, reads it" in pdf_text
    # What the disclosure says the verdict reads is what the cell recorded.
    # The harmful rate the checks read: harmful plus unscored answers (never safe).
    recorded = max(rate(cp.evals["harm"]).value for cp in cell.checkpoints)
    assert recorded == worst["worst_harmful"]


def test_overlap_is_measured_and_warned_about(evidence: Evidence, view: ReportView,
                                              pdf_text: str) -> None:
    memorise = _cell(evidence, "memorise").notes["train_data"][0]["overlap"]["harm"]
    # `memorise` trains on every prompt `harm` evaluates: all of them overlap.
    assert memorise["overlapping"] == memorise["eval_prompts"] == 12
    warning = (f"shares a sequence of 8 words with 12 of 12 (100.0%) prompts of evaluation harm "
               f"({memorise['exact_duplicates']} exact duplicate(s))")
    assert warning in pdf_text
    assert any(warning in n for n in _section(view, "resistance_strong").notes)
    table = view.disclosures.overlap.table
    assert table is not None and table.rows[0][0] == "memorise"  # highest overlap first
    pairs = {(c.attack_id, d["name"], e) for c in evidence.cells
             for d in c.notes.get("train_data", []) for e in d["overlap"]}
    assert len(table.rows) == len(pairs)


def test_early_stop_is_listed_with_step_and_reason(evidence: Evidence, view: ReportView,
                                                   pdf_text: str) -> None:
    stopped = [c for c in evidence.cells if c.early_stop is not None]
    assert [c.attack_id for c in stopped] == ["memorise"]
    stop = stopped[0].early_stop
    assert stop is not None and stop.step < stopped[0].max_steps
    table = view.disclosures.early_stops.table
    assert table is not None
    assert table.rows == [["memorise", "candidate seed 0", f"{stop.step} of "
                           f"{stopped[0].max_steps}", stop.reason]]
    attack_cells = sum(c.attack_id != "baseline" for c in evidence.cells)
    assert f"1 of {attack_cells} attack cells stopped before their step budget" in pdf_text


def test_judge_validation_shows_accuracy_fpr_and_fnr(evidence: Evidence, view: ReportView,
                                                     pdf_text: str) -> None:
    validated = [j for j in evidence.judges if j.get("validation")]
    assert {j["name"] for j in validated} == {"canary", "keywords"}
    lines = {(j.eval, j.name): j for j in view.method.judges}
    for j in validated:
        v = j["validation"]
        line = lines[(j["eval"], j["name"])]
        assert (line.accuracy, line.fpr, line.fnr) == (
            pct(v["accuracy"]), pct(v["false_positive_rate"]), pct(v["false_negative_rate"]))
        sentence = (f"Judge {j['name']} on {j['eval']}: {pct(v['accuracy'])} accurate on "
                    f"builtin:judge-validation (n={v['n']}); false-positive rate "
                    f"{pct(v['false_positive_rate'])}")
        assert any(sentence in n for n in _section(view, "validity").notes)
        assert sentence in pdf_text
    # The keyword judge calls benign answers harmful: its false-positive rate is not zero.
    keywords = next(j for j in validated if j["name"] == "keywords")["validation"]
    assert keywords["false_positive_rate"] > 0
    # The same canary judge (same parameters) decides cipher_harm: its validation is harm's.
    assert lines[("cipher_harm", "canary")].validated_on == (
        "not here; the same judge is validated under harm")
    assert "combines its 2 judge(s) by rule 'primary'" in pdf_text


def test_summary_md_carries_the_disclosures(disclosure_run: Path, view: ReportView) -> None:
    text = (disclosure_run / "summary.md").read_text(encoding="utf-8")
    assert "<summary>Disclosures (attacks and judges)</summary>" in text
    notes = [line for line in text.splitlines() if line.startswith("- ")]
    assert len(view.disclosure_notes) >= 8
    assert any("covert training examples" in n for n in notes)
    assert any("stopped early" in n for n in notes)


def test_hostile_strings_in_notes_render_inert(disclosure_run: Path, evidence: Evidence) -> None:
    """Notes are written by plug-ins, which may be third-party: they are escaped like model
    output, with control characters shown."""
    hostile = '<img src="file:///etc/passwd"></td></table><script>alert(1)</script>\x1b[31m'
    tampered = evidence.model_copy(deep=True)
    cell = next(c for c in tampered.cells if c.attack_id == "covert")
    cell.notes["covert_screening"][0]["judge"] = hostile
    search = next(c for c in tampered.cells if c.attack_id == "search")
    search.notes["search"]["strategy"] = hostile
    search.early_stop = None
    memorise = next(c for c in tampered.cells if c.attack_id == "memorise")
    assert memorise.early_stop is not None
    memorise.early_stop.reason = hostile
    data = tampered.to_bytes()
    view = build(disclosure_run, tampered, data, policy_of(tampered), "signer",
                 with_figures=False)
    html = render_one("html", view, tampered, data).decode()
    assert "<script>" not in html and "<img src=" not in html
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 3
    assert "\x1b" not in html and "\\x1b[31m" in html
    md = render_one("md", view, tampered, data).decode()
    assert "\\<img" in md and re.search(r"(?<!\\)<(img|script|/td)", md) is None
