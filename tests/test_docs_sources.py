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


def _demo_numbers():  # type: ignore[no-untyped-def]
    import importlib.util

    spec = importlib.util.spec_from_file_location("demo_numbers",
                                                  ROOT / "scripts" / "demo_numbers.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_page_quotes_only_numbers_a_run_produced() -> None:
    """Issue 15, defect 3: docs/demo.md's numbers are the rendering of a stored demo run
    record (date, machine, command); outside that block it quotes only recipe values."""
    import json

    from certify.demo.recipes import RECIPES

    numbers = _demo_numbers()
    data = json.loads((ROOT / "docs" / "demo-numbers.json").read_text(encoding="utf-8"))
    page = (ROOT / "docs" / "demo.md").read_text(encoding="utf-8")
    block = numbers.block_of(page)
    assert block == numbers.render(data)
    assert data["collected"][:4].isdigit() and "CPU cores" in data["machine"]
    for words in ("audit builtin:tiny-chat-immunized", "--reference builtin:tiny-chat",
                  "--policy ci-smoke"):
        assert words in data["command"]
    assert f"Measured {data['collected'][:10]} on {data['machine']}" in block
    outside = page.replace(block, "")
    stop = {f"{round(100 * v)}%" for v in RECIPES["tiny-chat"]["train"]["stop_when"].values()}
    assert set(re.findall(r"\d+(?:\.\d+)?%", outside)) <= stop
    assert not re.search(r"\b\d+/\d+\b", outside)  # no "52/52"-style step pairs
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    demo = readme[readme.index("## The demo"):readme.index("## The five conditions")]
    assert not re.search(r"\d(?:\.\d+)?×|\d+%|about \d+ steps", demo)


def test_own_model_guide_names_everything_the_shipped_policies_read() -> None:
    """docs/own-model.md tells a user what to cache; it cannot drift from the policies."""
    from certify.policy.load import load_policy, shipped_names

    datasets: set[tuple[str, str | None]] = set()
    models: set[str] = set()
    tasks: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            source = node.get("source")
            if isinstance(source, str) and source.startswith("hf:"):
                datasets.add((source[3:], node.get("split")))
            if node.get("judge") in ("classifier", "guard"):
                models.add(node["params"]["model"])
            if isinstance(node.get("tasks"), list):
                tasks.update(node["tasks"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for name in shipped_names():
        walk(load_policy(name).effective)
    guide = (ROOT / "docs" / "own-model.md").read_text(encoding="utf-8")
    assert datasets and models
    for repo, split in datasets:
        assert f"`{repo}`" in guide and f"`{split}`" in guide, (repo, split)
    for model in models:
        assert f"hf download {model}" in guide, model
    from certify.demo.recipes import LM_EVAL_DIR

    # Tasks certify bundles (the demo's offline lm-eval tasks) need nothing cached.
    bundled = {p.name.removesuffix(".yaml.in") for p in LM_EVAL_DIR.glob("*.yaml.in")}
    assert {"certify_tiny_capability", "certify_hazard_mc"} <= bundled
    for task in tasks - bundled:
        assert f"`{task}`" in guide, task
    assert "own-model.md" in (ROOT / "README.md").read_text(encoding="utf-8")
