"""Policy composition: `extends`, overlays, merge rules, provenance of errors, name resolution."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import pytest

from certify.errors import PolicyError, UsageError
from certify.policy.load import load_policy, resolve, resolve_overlay, shipped_dir
from certify.policy.merge import merge
from tests.conftest import ROOT, run_certify


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def check(loaded, check_id):  # type: ignore[no-untyped-def]
    return next(c for c in loaded.policy.checks if c.id == check_id)


# --------------------------------------------------------------------------- extends

def test_extends_shipped_policy_merges_by_id(tmp_path: Path) -> None:
    child = write(tmp_path / "child.yaml", """
        extends: ci-smoke
        id: ci-child
        title: "stricter smoke"
        attacks:
          - id: harmful-full
            budget: {learning_rate: [1.0e-3, 3.0e-3]}
          - id: harmful-extra
            attack: sft
            params: {dataset: builtin:harm-train}
            budget: {max_steps: 8}
        checks:
          - id: strong-resistance
            max_rate: 0.25
    """)
    loaded = load_policy(str(child))
    base = load_policy("ci-smoke").policy
    p = loaded.policy
    assert p.id == "ci-child" and p.extends == "ci-smoke"
    full = p.attack("harmful-full")
    # The overridden axis changed; the axes the child did not write are the parent's.
    assert full.budget["learning_rate"] == [1.0e-3, 3.0e-3]
    assert full.budget["max_steps"] == base.attack("harmful-full").budget["max_steps"]
    assert full.params == base.attack("harmful-full").params
    assert [a.id for a in p.attacks] == [a.id for a in base.attacks] + ["harmful-extra"]
    assert check(loaded, "strong-resistance").max_rate == 0.25
    assert len(p.checks) == len(base.checks)
    assert [f.role for f in loaded.files] == ["policy", "extends"]
    assert loaded.files[1].sha256 == hashlib.sha256(
        (shipped_dir() / "ci-smoke.yaml").read_bytes()).hexdigest()


def test_extends_a_relative_path_next_to_the_child(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    write(tmp_path / "base.yaml", (shipped_dir() / "ci-smoke.yaml").read_text())
    child = write(tmp_path / "sub" / "child.yaml", """
        extends: ../base.yaml
        id: rel-child
        title: relative
    """)
    loaded = load_policy(str(child))
    assert loaded.policy.id == "rel-child"
    assert Path(loaded.files[1].path).resolve() == (tmp_path / "base.yaml").resolve()


def test_extends_cycle_is_reported(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "extends: b.yaml\nid: a\ntitle: a\n")
    write(tmp_path / "b.yaml", "extends: a.yaml\nid: b\ntitle: b\n")
    with pytest.raises(PolicyError) as e:
        load_policy(str(tmp_path / "a.yaml"))
    assert "cycle" in str(e.value)
    assert "a.yaml" in str(e.value) and "b.yaml" in str(e.value)


def test_extends_unknown_parent_suggests_shipped_name(tmp_path: Path) -> None:
    child = write(tmp_path / "c.yaml", "id: c\ntitle: c\nextends: sb1074\n")
    with pytest.raises(PolicyError) as e:
        load_policy(str(child))
    assert f"{child}:3" in str(e.value)
    assert "did you mean 'sb1047'" in str(e.value)


def test_error_inherited_from_parent_names_the_parent_file(tmp_path: Path) -> None:
    # The parent's mistake (an unknown attack) must be reported at the parent's line,
    # not at a line of the child that never wrote it.
    base = write(tmp_path / "base.yaml", (shipped_dir() / "ci-smoke.yaml").read_text()
                 .replace("attack: lora", "attack: lorra"))
    child = write(tmp_path / "child.yaml", "extends: base.yaml\nid: c\ntitle: c\n")
    with pytest.raises(PolicyError) as e:
        load_policy(str(child))
    base_line = next(i for i, line in enumerate(base.read_text().splitlines(), 1)
                     if "attack: lorra" in line)
    message = str(e.value)
    assert f"{tmp_path / 'base.yaml'}:{base_line}" in message
    assert "did you mean 'lora'" in message


# --------------------------------------------------------------------------- overlays

def test_overlay_overrides_thresholds_and_its_hash_is_recorded(tmp_path: Path) -> None:
    overlay = write(tmp_path / "thresholds.yaml", """
        checks:
          - id: strong-resistance
            max_rate: 0.3
          - id: over-refusal
            max_increase: 0.05
        evidence: {validity_days: 30}
    """)
    loaded = load_policy("ci-smoke", [str(overlay)])
    assert check(loaded, "strong-resistance").max_rate == 0.3
    assert check(loaded, "over-refusal").max_increase == 0.05
    assert loaded.policy.evidence.validity_days == 30
    # Untouched fields of the overridden check keep the policy's values.
    assert check(loaded, "strong-resistance").eval == "harm"
    assert loaded.files[-1].role == "overlay"
    assert loaded.files[-1].sha256 == hashlib.sha256(overlay.read_bytes()).hexdigest()
    # The policy's own digest is still the policy file's, not the merged result's.
    assert loaded.sha256 == load_policy("ci-smoke").sha256


def test_overlays_apply_in_order(tmp_path: Path) -> None:
    first = write(tmp_path / "1.yaml", "checks: [{id: strong-resistance, max_rate: 0.3}]\n")
    second = write(tmp_path / "2.yaml", "checks: [{id: strong-resistance, max_rate: 0.2}]\n")
    assert check(load_policy("ci-smoke", [str(first), str(second)]),
                 "strong-resistance").max_rate == 0.2
    assert check(load_policy("ci-smoke", [str(second), str(first)]),
                 "strong-resistance").max_rate == 0.3


def test_overlay_error_points_at_the_overlay_line(tmp_path: Path) -> None:
    overlay = write(tmp_path / "bad.yaml", """
        # a comment
        checks:
          - id: strong-resistance
            max_rate: 1.5
          - id: generalization
            max_rat: 0.1
    """)
    with pytest.raises(PolicyError) as e:
        load_policy("ci-smoke", [str(overlay)])
    message = str(e.value)
    assert f"{overlay}:4" in message and "less than or equal to 1" in message
    assert f"{overlay}:6" in message and "did you mean 'max_rate'" in message
    assert len(e.value.problems) == 2


def test_overlay_for_another_policy_names_the_attacks_the_policy_lacks() -> None:
    """first-look is written for the regulatory policies; on ci-smoke it once gave six
    "attacks[3].attack: required field is missing" (issue 15, defect 4)."""
    with pytest.raises(PolicyError) as e:
        load_policy("ci-smoke", ["first-look"])
    assert len(e.value.problems) == 1
    problem = e.value.problems[0]
    assert "the overlay names attacks that shipped:ci-smoke does not have" in problem
    lines = (ROOT / "policies" / "overlays" / "first-look.yaml").read_text().splitlines()
    for ident in ("identity-shift", "worst-case-search"):
        line = next(i for i, text in enumerate(lines, 1) if f"id: {ident}" in text)
        assert f"'{ident}' (line {line})" in problem
    assert "'harmful-full'" not in problem.split("does not have")[1].split(". ")[0]
    assert "ci-smoke has harmful-full, harmful-lora, benign-finetune" in problem
    assert "required field is missing" not in str(e.value)


def test_extending_policy_that_changes_a_check_its_base_lacks_says_so(tmp_path: Path) -> None:
    child = write(tmp_path / "child.yaml", """
        extends: ci-smoke
        checks:
          - id: no-such-check
            max_rate: 0.2
    """)
    with pytest.raises(PolicyError) as e:
        load_policy(str(child))
    assert e.value.problems == [
        f"{child}:3: the extending policy names check that shipped:ci-smoke does not have: "
        "'no-such-check' (line 3). An extending policy changes shipped:ci-smoke's checks by id "
        + e.value.problems[0].split("checks by id ", 1)[1]]
    assert "give its `check` field" in e.value.problems[0]


def test_overlay_may_still_add_a_whole_new_attack(tmp_path: Path) -> None:
    overlay = write(tmp_path / "add.yaml", """
        attacks:
          - id: harmful-full-extra
            attack: sft
            params: {dataset: builtin:harm-train}
            budget: {learning_rate: 1.0e-3, n_samples: 64, batch_size: 8, max_steps: 8}
    """)
    ids = [a.id for a in load_policy("ci-smoke", [str(overlay)]).policy.attacks]
    assert ids[-1] == "harmful-full-extra" and "harmful-full" in ids


def test_overlay_cannot_extend(tmp_path: Path) -> None:
    overlay = write(tmp_path / "o.yaml", "extends: sb1047\n")
    with pytest.raises(PolicyError) as e:
        load_policy("ci-smoke", [str(overlay)])
    assert "cannot `extends`" in str(e.value)


def test_overlay_with_duplicate_ids_is_an_error_not_a_silent_merge(tmp_path: Path) -> None:
    overlay = write(tmp_path / "dup.yaml", """
        checks:
          - {id: strong-resistance, max_rate: 0.3}
          - {id: strong-resistance, max_rate: 0.1}
    """)
    with pytest.raises(PolicyError) as e:
        load_policy("ci-smoke", [str(overlay)])
    assert f"{overlay}:3: checks[1]: id 'strong-resistance' appears twice" in str(e.value)


def test_overlay_cannot_drop_limitations(tmp_path: Path) -> None:
    base = load_policy("sb1047").policy
    overlay = write(tmp_path / "o.yaml", "limitations: [\"reduced budget\"]\nout_of_scope: []\n")
    p = load_policy("sb1047", [str(overlay)]).policy
    assert p.limitations == [*base.limitations, "reduced budget"]
    assert p.out_of_scope == base.out_of_scope


def test_shipped_overlays_resolve_by_name_from_anywhere(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path, label = resolve_overlay("developer-thresholds")
    assert path == shipped_dir() / "overlays" / "developer-thresholds.yaml"
    assert label == "shipped:overlays/developer-thresholds"
    with pytest.raises(UsageError) as e:
        resolve_overlay("developer-threshold")
    assert "did you mean 'developer-thresholds'" in str(e.value)


@pytest.mark.parametrize("name", ["sb1047", "sb53", "eu-ai-act-gpai", "nist-800-1"])
def test_shipped_overlays_apply_to_every_regulatory_policy(name: str) -> None:
    base = load_policy(name).policy
    loaded = load_policy(name, ["developer-thresholds", "first-look"])
    assert [f.role for f in loaded.files][-2:] == ["overlay", "overlay"]
    assert check(loaded, "strong-resistance").max_rate == 0.05
    assert loaded.policy.attack("harmful-full").seeds == [0]
    assert loaded.policy.attack("harmful-full").budget["max_steps"] == 256
    assert len(loaded.policy.limitations) == len(base.limitations) + 1


def test_empty_list_replaces_instead_of_silently_keeping_the_base() -> None:
    base = {"checks": [{"id": "a", "max_rate": 0.1}], "baseline": ["harm"]}
    assert merge(base, {"baseline": []})["baseline"] == []
    assert merge(base, {"checks": []})["checks"] == []


# --------------------------------------------------------------------------- resolution

def test_local_file_wins_over_shipped_name(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "sb1047.yaml", (shipped_dir() / "ci-smoke.yaml").read_text())
    path, label = resolve("sb1047.yaml")
    assert path == Path("sb1047.yaml") and label == "sb1047.yaml"
    # Without the .yaml suffix there is no local file of that name: the shipped one.
    assert resolve("sb1047")[0] == shipped_dir() / "sb1047.yaml"


@pytest.mark.parametrize("spelling", ["sb1047", "sb1047.yaml"])
def test_cli_resolves_shipped_policy_from_another_directory(tmp_path: Path, spelling: str) -> None:
    out = run_certify("policy", "validate", spelling, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"ok    {spelling}"


def test_cli_unknown_policy_is_a_usage_error(tmp_path: Path) -> None:
    out = run_certify("policy", "validate", "sb1074", cwd=tmp_path)
    assert out.returncode == 2
    assert "did you mean 'sb1047'" in out.stderr


# --------------------------------------------------------------------------- safe YAML

def test_yaml_hazards_are_policy_errors(tmp_path: Path) -> None:
    # Seven levels of ten aliases each expand to 10^7 nodes from a 400-byte file.
    levels = zip("abcdef", "bcdefg", strict=True)
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in levels)
    cases = {
        "bomb.yaml": (bomb, "alias bomb"),
        "dup.yaml": ("id: x\ntitle: t\nid: y\n", "duplicate key 'id' (first on line 1)"),
        "latin1.yaml": (None, "not valid UTF-8"),
        "list.yaml": ("- 1\n- 2\n", "top level must be a mapping"),
        "code.yaml": ("id: !!python/object/apply:os.system ['true']\n", "invalid YAML"),
    }
    (tmp_path / "latin1.yaml").write_bytes(b"id: x\ntitle: caf\xe9\n")
    for name, (text, expected) in cases.items():
        if text is not None:
            (tmp_path / name).write_text(text)
        with pytest.raises(PolicyError) as e:
            load_policy(str(tmp_path / name))
        assert expected in str(e.value), name


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = (shipped_dir() / "ci-smoke.yaml").read_text().replace("max_rate: 0.50", "max_rat: 0.5")
    path = write(tmp_path / "many.yaml", text)
    with pytest.raises(PolicyError) as e:
        load_policy(str(path))
    problems = e.value.problems
    # Three checks carry the typo; each is reported, with its line and the nearest name.
    typos = [p for p in problems if "did you mean 'max_rate'" in p]
    assert len(typos) == 3
    assert any("checks[0].max_rat" in p for p in typos)
    assert any("checks[5].max_rat" in p for p in typos)
    assert any("checks[7].max_rat" in p for p in typos)
