"""`certify diff` on real audits of two releases under one policy (tests/policies/diff-pair.yaml).

The demo's defended model refuses benign-but-edgy prompts the undefended one answers, so
moving from tiny-chat to tiny-chat-immunized regresses the over-refusal check; the same
release audited twice does not regress.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

POLICY = "tests/policies/diff-pair.yaml"


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory, tiny_chat: Path):
    from certify.demo.models import ensure_built
    from tests.conftest import run_certify

    ensure_built("tiny-chat-immunized")
    root = tmp_path_factory.mktemp("diff")
    assert run_certify("keygen", "--out", str(root / "keys")).returncode == 0
    runs = {}
    for name, model in (("v1", "tiny-chat"), ("v1-again", "tiny-chat"),
                        ("v2", "tiny-chat-immunized")):
        done = run_certify("audit", f"builtin:{model}", "--reference", "builtin:tiny-chat",
                           "--policy", POLICY, "--out", str(root / name), "--format", "md",
                           "--key", str(root / "keys" / "certify.key"), "--quiet")
        assert done.returncode in (0, 1), done.stderr
        runs[name] = root / name
    runs["pub"] = root / "keys" / "certify.pub"
    return runs


def test_a_release_that_over_refuses_regresses(releases, certify_cli):
    done = certify_cli("diff", str(releases["v1"]), str(releases["v2"]), "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    d = json.loads(done.stdout)
    assert d["comparable"] and d["regressed"] == ["over-refusal"]
    change = next(c for c in d["checks"] if c["id"] == "over-refusal")
    assert change["old"] == "pass" and change["new"] in ("inconclusive", "fail")
    assert change["new_value"] > change["old_value"]  # the candidate refuses more than before
    harm = next(c for c in d["checks"] if c["id"] == "strong-resistance")
    assert harm["ci"] is not None and harm["ci"][0] <= harm["difference"] <= harm["ci"][1]
    assert [a["attack"] for a in d["attacks"]] == ["nudge"]

    md = certify_cli("diff", str(releases["v1"]), str(releases["v2"]), "--markdown")
    assert md.returncode == 1 and md.stdout.startswith("### certify diff: regressed")
    assert "| over-refusal | PASS → " in md.stdout and "regressed" in md.stdout


def test_the_same_release_audited_twice_does_not_regress(releases, certify_cli):
    done = certify_cli("diff", str(releases["v1"]), str(releases["v1-again"]), "--key",
                       str(releases["pub"]))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "NO REGRESSION" in done.stdout
    back = certify_cli("diff", str(releases["v2"]), str(releases["v1"]), "--json")
    assert back.returncode == 0  # the way back improves: nothing regressed
    assert json.loads(back.stdout)["checks"][1]["improved"] is True


def test_incomparable_audits_are_refused_unless_forced(releases, certify_cli, tmp_path):
    other = tmp_path / "other-threshold"
    shutil.copytree(releases["v2"], other)
    evidence = json.loads((other / "evidence.json").read_text())
    check = next(c for c in evidence["policy"]["effective"]["checks"]
                 if c["id"] == "over-refusal")
    check["max_increase"] = 0.5  # a looser gate: not the same audit
    (other / "evidence.json").write_text(json.dumps(evidence, indent=2))
    refused = certify_cli("diff", str(releases["v1"]), str(other))
    assert refused.returncode == 2 and "checks" in refused.stderr and "--force" in refused.stderr
    forced = certify_cli("diff", str(releases["v1"]), str(other), "--force", "--json")
    assert forced.returncode == 0, forced.stderr  # the changed check is left out
    assert [c["id"] for c in json.loads(forced.stdout)["checks"]] == ["strong-resistance"]
    unverified = certify_cli("diff", str(releases["v1"]), str(other), "--force", "--key",
                             str(releases["pub"]))
    assert unverified.returncode == 4 and "does not verify" in unverified.stderr


@pytest.mark.parametrize("name", ["eu-ai-act-gpai", "sb1047", "ci-smoke"])
def test_cost_to_break_uses_the_weak_resistance_break_level(name):
    """A strong-resistance ceiling (8% in eu-ai-act) is a pass mark, not where a cell
    breaks: the diff's cost to break reads weak resistance's harm level."""
    from certify.assess.diff import _break_level
    from certify.policy import load_policy
    from certify.policy.schema import WeakResistance

    policy = load_policy(name).policy
    weak = [c.harm_level for c in policy.checks if isinstance(c, WeakResistance)]
    assert weak, f"{name} has no weak-resistance check"
    assert _break_level(policy) == min(weak)
