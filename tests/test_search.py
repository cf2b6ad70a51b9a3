"""The worst-case search as a policy declares it: the shipped demo's space, the dry run's
price of its trials, and a space naming a knob the inner attack does not have (exit 2).
The search running end to end: test_attacks_plumbing.py, report/test_report_disclosures.py;
killed and resumed: test_search_resume.py (slow)."""

from __future__ import annotations

from pathlib import Path

import pytest

from certify.conductor import AuditOptions
from certify.cost import dry_run
from certify.errors import PolicyError
from certify.policy.load import load_policy
from tests.conftest import ROOT

RESUME = ROOT / "tests" / "policies" / "search-resume.yaml"


def test_the_shipped_search_demo_searches_five_axes_with_tpe() -> None:
    attack = load_policy("search-demo").policy.attack("worst-case-search")
    space = attack.params["space"]
    assert {"optimizer", "schedule", "learning_rate"} <= set(space) and len(space) >= 5
    assert attack.params["sampler"] == "tpe" and space["learning_rate"]["log"] is True


def test_the_dry_run_prices_every_trial(tiny_chat: Path) -> None:
    report = dry_run(AuditOptions(model="builtin:tiny-chat", policy=str(RESUME)))
    row = next(r for r in report.rows if r.attack_id == "search")
    baseline = next(r for r in report.rows if r.attack_id == "baseline")
    assert row.cells == 1 and row.steps == 4 * 4  # four trials of max_steps 4
    # Every trial evaluates at both checkpoints: eight harm runs, not two.
    per_run = baseline.eval_flop
    assert row.eval_flop == pytest.approx(8 * per_run, rel=0.01)


def test_a_space_over_a_knob_the_inner_attack_lacks_is_refused(tmp_path: Path) -> None:
    bad = RESUME.read_text().replace("        optimizer: [adamw, sgd]\n",
                                     "        optimiser: [adamw, sgd]\n        momentum: [0.9]\n")
    (tmp_path / "bad.yaml").write_text(bad)
    with pytest.raises(PolicyError) as e:
        load_policy(str(tmp_path / "bad.yaml"))
    message = e.value.message
    assert "space.optimiser: not a knob of the inner attack's Params" in message
    assert "optimizer" in message and "space.momentum: not a knob" in message
    assert e.value.exit_code == 2
