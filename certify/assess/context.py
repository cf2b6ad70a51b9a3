"""What every check reads, and the helpers that shape a check's result."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from certify.assess.trajectory import config_key, scoped_cells
from certify.evidence import CellRecord, CheckResult, Verdict
from certify.policy import schema


@dataclass(frozen=True)
class Context:
    policy: schema.Policy
    cells: list[CellRecord]
    planned: list[dict[str, Any]]
    has_reference: bool
    confidence: float


def result(check: Any, verdict: Verdict, reason: str, **kw: Any) -> CheckResult:
    return CheckResult(id=check.id, check=check.check, condition=check.condition,
                       required=check.required, verdict=verdict, reason=reason, **kw)


def missing_cells(ctx: Context, attack_ids: list[str], role: str) -> list[str]:
    """Planned cells of these attacks on ``role`` without an ok result."""
    ok = {c.id for c in ctx.cells if c.status == "ok"}
    return [p["id"] for p in ctx.planned
            if p["role"] == role and p["attack_id"] in attack_ids and p["id"] not in ok]


def error_if_missing(check: Any, ctx: Context, attack_ids: list[str],
                      roles: tuple[str, ...]) -> CheckResult | None:
    absent = [m for r in roles for m in missing_cells(ctx, attack_ids, r)]
    if absent:
        return result(check, "error", f"{len(absent)} planned cell(s) have no result "
                      f"({', '.join(absent[:3])}{'…' if len(absent) > 3 else ''}); "
                      "resume the run to complete them", observed={"missing": absent})
    return None


def reference_pairs(ctx: Context, attacks: list[str]) -> list[tuple[CellRecord, CellRecord]]:
    """Candidate cells with the reference cell of the same configuration and seed."""
    refs = {config_key(c): c for c in scoped_cells(ctx.cells, attacks, "reference")}
    return [(cand, refs[config_key(cand)]) for cand in scoped_cells(ctx.cells, attacks, "candidate")
            if config_key(cand) in refs]


def no_reference(check: Any, what: str, threshold: dict[str, Any]) -> CheckResult:
    return result(check, "inconclusive", f"no reference model was given; {what}; pass "
                   "--reference UNDEFENDED_MODEL", threshold=threshold)
