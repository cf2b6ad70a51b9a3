"""The judge-validity reason names what decided it (issue 15, defect 8: the report called
the only deciding judge's accuracy the "lowest", above a lower judge it only reports)."""

from __future__ import annotations

from typing import Any

from certify.assess.comparisons import judge_validity
from certify.assess.context import Context
from certify.evidence import CellRecord
from certify.policy.load import load_policy


def _context(ensemble: str) -> tuple[Any, Context]:
    policy = load_policy("ci-smoke").policy
    check = next(c for c in policy.checks if c.check == "judge_validity")
    validation = [{"judge": "canary", "correct": 120, "n": 120, "accuracy": 1.0},
                  {"judge": "keywords", "correct": 96, "n": 120, "accuracy": 0.8}]
    cell = CellRecord(id="c", role="candidate", attack_id="harmful-full", technique="sft",
                      purpose="harmful", params={}, seed=0, max_steps=1, status="ok",
                      notes={"evaluators": {check.eval: {"ensemble": ensemble,
                                                         "judge_validation": validation}}})
    return check, Context(policy=policy, cells=[cell], planned=[], has_reference=False,
                          confidence=0.95)


def test_one_deciding_judge_is_not_called_the_lowest() -> None:
    check, ctx = _context("primary")
    result = judge_validity(check, ctx)
    assert result.verdict == "pass"
    assert result.reason.startswith("deciding judge accuracy 100.0%")
    assert "(canary, n=120)" in result.reason and "lowest" not in result.reason
    assert result.reason.endswith("keywords reported beside it, not deciding (ensemble primary)")


def test_several_deciding_judges_report_the_lowest() -> None:
    check, ctx = _context("any")
    result = judge_validity(check, ctx)
    assert result.reason.startswith("lowest judge accuracy 80.0%")
    assert "(keywords, n=120)" in result.reason and result.verdict == "fail"
