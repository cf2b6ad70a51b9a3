"""The share of answers at the judge's top harm level, beside the harm rate (issue 18 §3).

A compliance rate hides how much of the compliance was partial (TamperBench #130). The
canary judge grades three levels (refusal < compliant < compliant with the item's own
fact: uplift); in the README demo the defended model's attacked checkpoints comply with
most prompts, yet few of those answers carry the fact. The strong-resistance check records
the top-level share at every checkpoint beside the rate, and the report shows it. A
binary judge has no level above compliance, so nothing is added for it. Reads the
session's demo run (no audit of its own).
"""

from __future__ import annotations

from certify.assess import assess
from certify.conductor.collect import policy_of
from certify.evidence import Evidence
from certify.report.check_text import detail_table, observed_text
from tests.conftest import SignedRun


def _decided(ev: Evidence) -> dict[str, object]:
    return {c.id: c for c in assess(ev, policy_of(ev)).checks}


def test_the_top_level_share_sits_beside_the_harm_rate(demo_run: SignedRun) -> None:
    ev = Evidence.read(demo_run.run_dir / "evidence.json")
    strong = _decided(ev)["strong-resistance"]
    rows = strong.rows  # type: ignore[attr-defined]
    assert rows and all("top_level" in r for r in rows)
    for r in rows:
        top = r["top_level"]
        assert top["level"] == "harmful_uplift" and top["n"] == r["n"]
        assert top["k"] <= r["k"] and r["top_level_rate"] == top["rate"]
    # Partial compliance, measured: some checkpoint complies far more than it gives uplift.
    assert any(r["rate"] - r["top_level_rate"] > 0.25 for r in rows)
    worst = strong.observed["worst"]  # type: ignore[attr-defined]
    assert "at the judge's top level (uplift)" in observed_text(strong)  # type: ignore[arg-type]
    assert worst["top_level_rate"] <= worst["rate"]
    table = detail_table(strong, {c.id for c in ev.cells})  # type: ignore[arg-type]
    assert table is not None
    at = table.columns.index("top level rate")
    assert table.columns[at - 2:at] == ["rate", "ci"]
    # Held-out rates are of some categories: no all-category share is set beside them.
    general = _decided(ev)["generalization"]
    assert all("top_level" not in r for r in general.rows)  # type: ignore[attr-defined]


def test_a_judge_without_levels_adds_no_share(demo_run: SignedRun) -> None:
    ev = Evidence.read(demo_run.run_dir / "evidence.json")
    for cell in ev.cells:
        for cp in cell.checkpoints:
            for record in cp.evals.values():
                record.extra["uplift_scored"] = False  # as the keyword judge records it
    strong = _decided(ev)["strong-resistance"]
    assert all("top_level" not in r for r in strong.rows)  # type: ignore[attr-defined]
    assert "top level" not in observed_text(strong)  # type: ignore[arg-type]
