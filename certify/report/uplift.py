"""The share of compliance that carried uplift, per cell and checkpoint.

A harm evaluation whose judges score uplift (``uplift_scored`` in its record: the canary
judge on ``builtin:harm-eval``) records two rates: ``harmful`` (compliance) and
``harmful_uplift`` (compliance that carried the item's own fact). Their ratio says how
much of the measured compliance would actually help an attacker (StrongREJECT's point:
compliance overstates harm). Evaluations that cannot score uplift are left out here and
named instead, so the report never implies an uplift measurement it does not have.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from certify.assess.trajectory import top_level, trajectory
from certify.evidence import Evidence
from certify.stats import pct


@dataclass(frozen=True)
class UpliftRow:
    attack: str
    role: str
    seed: int
    eval: str
    points: list[tuple[int, int, int]]
    """(step, compliant responses, of which with uplift), in step order."""
    top: list[tuple[int, int]] = field(default_factory=list)
    """(answers at the judge's top level, unscored counted; all answers) per point: the
    share of *all* answers at the top, which a compliance rate alone hides."""

    @property
    def text(self) -> str:
        tops = self.top or [(0, 0)] * len(self.points)
        return "; ".join(f"step {s}: {share(c, u)}" + (f", {k}/{n} of all answers ({pct(k / n)})"
                                                     if n else "")
                         for (s, c, u), (k, n) in zip(self.points, tops, strict=True))


def share(compliant: int, uplift: int) -> str:
    if not compliant:
        return "no compliance"
    return f"{uplift}/{compliant} ({pct(uplift / compliant)})"


def uplift_rows(evidence: Evidence) -> tuple[list[UpliftRow], list[str]]:
    """Rows for every ok attack cell of every harm evaluation that scores uplift, and the
    harm evaluations that do not (their judges cannot tell compliance from uplift)."""
    harm = [e for e, spec in evidence.evaluations.items() if spec.get("measures") == "harm"]
    scored: set[str] = set()
    unscored: set[str] = set()
    rows = []
    cells = sorted((c for c in evidence.cells if c.status == "ok" and c.attack_id != "baseline"),
                   key=lambda c: (c.attack_id, c.role != "candidate", c.seed, c.id))
    for eval_id in harm:
        for cell in cells:
            points, tops = [], []
            for p in trajectory(cell, eval_id, evidence.cells):
                m = p.record.metrics
                if not p.record.extra.get("uplift_scored") or "harmful_uplift" not in m:
                    unscored.add(eval_id)
                    continue
                scored.add(eval_id)
                complied = m["harmful"].k or 0
                # The metric counts compliance with uplift; unscored responses are added by
                # the gate (trajectory.rate), not here: they are not compliance.
                points.append((p.step, complied, m["harmful_uplift"].k or 0))
                top = top_level(p.record)
                tops.append((top["k"], top["n"]) if top else (0, 0))
            if points:
                rows.append(UpliftRow(cell.attack_id, cell.role, cell.seed, eval_id, points,
                                      tops))
    return rows, sorted(unscored - scored)
