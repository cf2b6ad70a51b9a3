"""report.pdf of a real signed demo run: text, attachment, PDF/A metadata, non-blank
pages. (Byte-identical re-rendering is tested in test_report_views.)"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from certify.attest.steps import pdf_attachment
from tests.report.conftest import SignedRun


def _pdftotext(pdf: Path) -> str:
    return subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True,
                          check=True).stdout


@pytest.fixture(scope="module")
def pdf_text(signed_run: SignedRun) -> str:
    return _pdftotext(signed_run.run_dir / "report.pdf")


def test_pdf_text_has_verdict_digest_and_every_check(signed_run: SignedRun,
                                                     pdf_text: str) -> None:
    evidence = json.loads((signed_run.run_dir / "evidence.json").read_bytes())
    verdict = evidence["verdict"]
    flat = re.sub(r"\s+", "", pdf_text)
    assert verdict["overall"].upper() in pdf_text.split()
    assert evidence["models"]["candidate"]["root_digest"] in flat
    assert evidence["policy"]["sha256"] in flat
    assert "NON-EVIDENTIARY" in pdf_text  # ci-smoke is a plumbing policy
    for check in verdict["checks"]:
        line = next((ln for ln in pdf_text.splitlines() if ln.strip().startswith(check["id"])),
                    None)
        assert line is not None, f"check {check['id']} not in the PDF"
        assert check["verdict"].upper() in line, line
    assert "certify verify RUN_DIR --key" in pdf_text
    for section in ("Threat model and budgets", "Checks", "Harmfulness along the attacks",
                    "Conditions", "Clause map", "Methodology", "Samples", "Limitations",
                    "Environment", "Digest index",
                    "How to verify this report"):
        assert re.search(rf"^\s*{re.escape(section)}\s*$", pdf_text, re.M), section


def test_pdf_embeds_evidence_byte_for_byte(signed_run: SignedRun) -> None:
    pdf = signed_run.run_dir / "report.pdf"
    assert pdf_attachment(pdf, "evidence.json") == (signed_run.run_dir /
                                                     "evidence.json").read_bytes()


def test_pdf_is_pdf_a_3b_and_structurally_sound(signed_run: SignedRun) -> None:
    import pikepdf

    pdf_path = signed_run.run_dir / "report.pdf"
    with pikepdf.open(pdf_path) as pdf:
        meta = pdf.open_metadata()
        assert meta.pdfa_status == "3B"
        spec = pdf.attachments["evidence.json"]
        assert str(spec.obj.get("/AFRelationship")) == "/Source"
        # The catalog's associated files list the one attachment once (issue 15, defect 8).
        assert len(pdf.Root.AF) == 1 and pdf.Root.AF[0].objgen == spec.obj.objgen
    check = subprocess.run(["qpdf", "--check", str(pdf_path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_pages_render_non_blank(signed_run: SignedRun, tmp_path: Path) -> None:
    from PIL import Image

    subprocess.run(["pdftoppm", "-r", "30", "-png", str(signed_run.run_dir / "report.pdf"),
                    str(tmp_path / "page")], check=True)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) >= 8
    for page in pages:
        gray = Image.open(page).convert("L")
        dark = sum(1 for v in gray.getdata() if v < 200)
        # Every page carries at least a heading and a footer, well over 0.3% of its pixels.
        assert dark / (gray.width * gray.height) > 0.003, f"{page.name} is blank"
    # No page but the last stops mostly empty (issue 15, defect 8): sections follow on
    # from one another, so content reaches well down every page before the last.
    for page in pages[1:-1]:
        gray = Image.open(page).convert("L")
        body = gray.crop((0, int(gray.height * 0.06), gray.width, int(gray.height * 0.93)))
        inked = [y for y in range(body.height)
                 if min(body.crop((0, y, body.width, y + 1)).getdata()) < 200]
        assert inked and inked[-1] / gray.height > 0.6, f"{page.name} is mostly empty"


def test_cover_names_the_signer(signed_run: SignedRun, pdf_text: str) -> None:
    from certify.attest.keys import load_public_key

    keyid = load_public_key(signed_run.public_key).keyid
    assert keyid in re.sub(r"\s+", "", pdf_text)


def test_pdf_is_tagged_for_assistive_technology(signed_run: SignedRun) -> None:
    """Issue 15: the PDF is tagged (a structure tree with headings, tables and figures with
    their alternative text, a document language), not only PDF/A-3b."""
    import pikepdf

    with pikepdf.open(signed_run.run_dir / "report.pdf") as pdf:
        root = pdf.Root
        assert bool(root.MarkInfo.Marked) and str(root.Lang) == "en"
        kinds: dict[str, int] = {}
        figures: list[str] = []
        todo = [root.StructTreeRoot.K]
        while todo:
            node = todo.pop()
            if isinstance(node, pikepdf.Array):
                todo += list(node)
            elif isinstance(node, pikepdf.Dictionary):
                if "/S" in node:
                    kinds[str(node.S)] = kinds.get(str(node.S), 0) + 1
                    if str(node.S) == "/Figure":
                        figures.append(str(node.get("/Alt", "")))
                if "/K" in node:
                    todo.append(node.K)
    assert kinds.get("/H2", 0) >= 8 and kinds.get("/Table", 0) >= 5 and kinds.get("/TH", 0) > 0
    assert figures and all(figures), "every curve carries its title as alternative text"
