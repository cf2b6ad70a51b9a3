"""What a user's clone points to is in the clone, or is a public citation (issue 15,
defect 2): docs, the README, shipped policies and templates name no private notes, and
every relative link in the docs resolves to a file of the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

USER_FILES = sorted([ROOT / "README.md", ROOT / "DEVELOPERS.md",
                     *(ROOT / "docs").glob("*.md"), *(ROOT / "policies").rglob("*.yaml"),
                     *(ROOT / "templates").glob("*.j2")])
# The project's working notes live outside the repository; a clone never has them.
PRIVATE = re.compile(r"shared/|reference/(?:regulatory|mission|ecosystem|feasibility|style)"
                     r"|\b(?:regulatory|mission|ecosystem|feasibility|style-anchors)\.md"
                     r"|\bDESIGN\.md|\bSTYLE\.md|shared notes")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("path", USER_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_file_a_user_reads_cites_notes_outside_the_repository(path: Path) -> None:
    found = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if PRIVATE.search(line)]
    assert found == []


@pytest.mark.parametrize("path", [p for p in USER_FILES if p.suffix == ".md"],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_in_the_docs_resolve(path: Path) -> None:
    broken = [target for target in LINK.findall(path.read_text(encoding="utf-8"))
              if "://" not in target and not target.startswith("mailto:")
              and not (path.parent / target).exists()]
    assert broken == []


def test_sources_cite_every_regime_by_a_public_address() -> None:
    text = (ROOT / "docs" / "sources.md").read_text(encoding="utf-8")
    for address in ("leginfo.legislature.ca.gov", "eur-lex.europa.eu",
                    "ec.europa.eu/newsroom/dae/redirection/document/118119",
                    "nvlpubs.nist.gov/nistpubs/ai/NIST.AI.800-1", "NIST.AI.600-1.pdf",
                    "arxiv.org/abs/2402.16382", "arxiv.org/abs/2412.07097"):
        assert address in text
