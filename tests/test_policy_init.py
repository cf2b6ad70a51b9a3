"""`certify policy init FILE --extends NAME`: a starter policy a user edits (issue 15,
"auditing your own model": a starter policy that extends a shipped one, with comments)."""

from __future__ import annotations

from pathlib import Path

import pytest

from certify.errors import UsageError
from certify.policy.load import load_policy, shipped_names
from certify.policy.starter import write_starter
from tests.conftest import run_certify

IDENTITY = ("id", "version", "title", "extends")


@pytest.mark.parametrize("base", shipped_names())
def test_starter_is_its_base_until_edited(base: str, tmp_path: Path) -> None:
    path = write_starter(tmp_path / "mine.yaml", base)
    mine, theirs = load_policy(str(path)).effective, load_policy(base).effective
    assert mine["id"] == "mine" and mine["title"] == f"mine (extends {theirs['id']})"
    assert {k: v for k, v in mine.items() if k not in IDENTITY} == \
        {k: v for k, v in theirs.items() if k not in IDENTITY}
    text = path.read_text(encoding="utf-8")
    for entry in [*theirs["attacks"], *theirs["checks"]]:
        assert f"#   - id: {entry['id']} " in text  # every entry listed, commented out


def test_uncommenting_an_entry_changes_only_that_value(tmp_path: Path) -> None:
    path = write_starter(tmp_path / "mine.yaml", "ci-smoke")
    lines = path.read_text(encoding="utf-8").splitlines()
    i = next(n for n, line in enumerate(lines) if line.startswith("#   - id: strong-resistance"))
    assert lines[i + 1] == "#     max_rate: 0.5"
    lines[next(n for n, line in enumerate(lines) if line.startswith("# checks:"))] = "checks:"
    lines[i] = "  - id: strong-resistance"
    lines[i + 1] = "    max_rate: 0.2"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    mine = {c.id: c for c in load_policy(str(path)).policy.checks}
    base = {c.id: c for c in load_policy("ci-smoke").policy.checks}
    assert mine["strong-resistance"].max_rate == 0.2  # type: ignore[union-attr]
    assert {k: v for k, v in mine.items() if k != "strong-resistance"} == \
        {k: v for k, v in base.items() if k != "strong-resistance"}


def test_init_never_overwrites_and_names_unknown_bases(tmp_path: Path) -> None:
    out = run_certify("policy", "init", str(tmp_path / "p.yaml"), "--extends", "nist-800-1")
    assert out.returncode == 0, out.stderr
    assert "certify policy validate" in out.stdout
    again = run_certify("policy", "init", str(tmp_path / "p.yaml"))
    assert again.returncode == 2 and "already exists" in again.stderr
    with pytest.raises(UsageError, match="no shipped policy"):
        write_starter(tmp_path / "q.yaml", "nist-800")
    assert not (tmp_path / "q.yaml").exists()
