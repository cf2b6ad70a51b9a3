"""Hostile model output renders escaped and truncated, and makes the renderer fetch nothing.

The fixture rewrites every per-sample record of a real run with hostile prompts and
responses (and a hostile check reason), updates the digests in the evidence, and
renders every view with a recording URL fetcher.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from certify._io import jsonl_bytes, sha256_file
from certify.conductor.collect import policy_of
from certify.evidence import Evidence
from certify.report import render_one
from certify.report.assets import make_fetcher
from certify.report.pdf import write_pdf
from certify.report.view import build

HUGE = "A" * 1_000_000
HOSTILE = [
    '<img src=file:///etc/passwd>',
    '</html><script>alert(1)</script>',
    '<style>@import url("http://attacker.invalid/x.css"); body{display:none}</style>',
    '<link rel="stylesheet" href="https://attacker.invalid/a.css">',
    '<svg><image href="file:///etc/shadow"/></svg>',
    'ctrl \x1b[31mred\x1b[0m nul\x00 bell\x07 rtl\u202eevil',
    "{{ 7*7 }} {% raw %} | table | pipe |\n| injected | row |",
    HUGE,
]
REASON = 'x | y <b>bold</b>\n| injected | row | [link](http://attacker.invalid) `code`'


def _first_per_eval(rows: list[dict], k: int) -> list[dict]:
    seen: dict[str, int] = {}
    kept = []
    for row in rows:
        seen[row["eval"]] = seen.get(row["eval"], 0) + 1
        if seen[row["eval"]] <= k:
            kept.append(row)
    return kept


@pytest.fixture(scope="module")
def hostile(signed_run, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    import shutil

    run = tmp_path_factory.mktemp("hostile") / "run"
    shutil.copytree(signed_run.run_dir, run, ignore=shutil.ignore_patterns(".lock"))
    evidence = Evidence.read(run / "evidence.json")
    for cell in evidence.cells:
        path = run / cell.samples_file  # type: ignore[operator]
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        rows = _first_per_eval(rows, 3)  # small files: each record carries 1 MB of text
        for i, row in enumerate(rows):
            row["prompt"] = HOSTILE[i % len(HOSTILE)]
            row["response"] = "\n".join(HOSTILE)  # every piece, then the huge string
            row["label"] = "benign"  # unredacted, so the hostile text reaches the page
            row["item"] = HOSTILE[(i + 2) % len(HOSTILE)][:200]
        path.write_bytes(jsonl_bytes(rows))
        cell.samples_sha256 = sha256_file(path)
    assert evidence.verdict is not None
    evidence.verdict.checks[0].reason = REASON
    evidence.write(run / "evidence.json")
    data = (run / "evidence.json").read_bytes()
    view = build(run, evidence, data, policy_of(evidence), "test signer")
    fetcher = make_fetcher()
    pdf = render_one("pdf", view, evidence, data, fetcher)
    (run / "report.pdf").write_bytes(pdf)
    html = render_one("html", view, evidence, data).decode()
    md = render_one("md", view, evidence, data).decode()
    junit = render_one("junit", view, evidence, data)
    return run, view, fetcher, html, md, junit


def test_hostile_samples_are_shown(hostile) -> None:  # type: ignore[no-untyped-def]
    _, view, *_ = hostile
    shown = [x.response for s in view.samples for x in s.samples]
    assert any("<img src=file:///etc/passwd>" in r for r in shown)


def test_renderer_fetched_only_packaged_assets(hostile) -> None:  # type: ignore[no-untyped-def]
    _, _, fetcher, *_ = hostile
    assert fetcher.refused == []
    assert fetcher.requested, "the PDF loads its bundled fonts through the fetcher"
    packaged = (r"certify-asset:(fonts/[\w-]+\.ttf"
                r"|figures/(curve|benign|generalization|cost)-\d+\.svg)")
    assert all(re.fullmatch(packaged, url) for url in fetcher.requested), fetcher.requested


def test_the_fetcher_refuses_and_records_external_urls() -> None:
    """Negative control: unescaped markup would fetch; the fetcher refuses and records it."""
    fetcher = make_fetcher()
    html = ('<html><body><img src="file:///etc/passwd">'
            '<link rel="stylesheet" href="http://attacker.invalid/a.css"></body></html>')
    from datetime import UTC, datetime

    write_pdf(html, {}, b"{}", datetime(2026, 1, 1, tzinfo=UTC), fetcher)
    assert "file:///etc/passwd" in fetcher.refused
    assert "http://attacker.invalid/a.css" in fetcher.refused


def test_html_escapes_hostile_text(hostile) -> None:  # type: ignore[no-untyped-def]
    _, view, _, html, _, _ = hostile
    assert "&lt;img src=file:///etc/passwd&gt;" in html
    assert not re.search(r"<img[^>]*file:", html)
    assert "<script" not in html
    assert html.count("</html>") == 1
    assert html.count("<style>") == (1 if view.cover.evidentiary else 2)  # only ours
    assert "attacker.invalid/a.css\">" not in html and "<link" not in html
    assert "\x1b" not in html and "\x00" not in html and "\u202e" not in html
    assert "\\x1b[31mred" in html and "\\u202eevil" in html
    assert "{{ 7*7 }}" in html  # data is never evaluated as a template
    assert "truncated: 1000000 characters in all" in html
    assert len(html) < 2_000_000


def test_pdf_shows_hostile_text_as_text(hostile) -> None:  # type: ignore[no-untyped-def]
    run = hostile[0]
    text = subprocess.run(["pdftotext", str(run / "report.pdf"), "-"], capture_output=True,
                          text=True, check=True).stdout
    assert "<img src=file:///etc/passwd>" in text
    assert "</html><script>alert(1)</script>" in text


def test_markdown_and_junit_stay_inert(hostile) -> None:  # type: ignore[no-untyped-def]
    _, view, _, _, md, junit = hostile
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + len(view.checks)  # the header and one row per check
    assert "<b>" not in md and "](http" not in md
    from xml.etree import ElementTree

    root = ElementTree.fromstring(junit)
    texts = [el.text or "" for el in root.iter("failure")]
    assert any("<b>bold</b>" in t for t in texts)  # stored as XML text, parsed back intact
