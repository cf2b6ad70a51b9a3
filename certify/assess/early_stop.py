"""Stop a cell once every check that reads it is decided; never changes a verdict.

A check reads a cell when its kind reads that role's trajectories (``schema.reads``)
and the cell's attack is in its scope. It is decided for the cell when its kind's
``settled`` says later checkpoints cannot change its verdict; a kind without one
(trainability needs the final score) keeps the cell running.

A check may need more than the cell's own checkpoints to know that: the
capability-bounded worst case compares each checkpoint's capability with the unmodified
model's, which the role's baseline cell measures. The worker passes that baseline when it
has it (it ran it, or found it finished in the run directory); without it such a check
is not decided, and the cell trains on.
"""

from __future__ import annotations

from certify.assess.kinds import kind_of
from certify.assess.trajectory import Point, scoped_attacks
from certify.evidence import CellRecord
from certify.policy.schema import Check, Policy


def _reads(check: Check, policy: Policy, cell: CellRecord) -> bool:
    reads = type(check).reads
    if cell.role not in reads.roles or reads.purpose is None:
        return False
    attacks = getattr(check, "attacks", None)
    return cell.attack_id in scoped_attacks(policy, attacks, check.eval, reads.purpose)


def _settled(check: Check, cell: CellRecord, points: list[Point], confidence: float,
             baseline: CellRecord | None) -> bool:
    settled = kind_of(check).settled
    return settled is not None and bool(points) and settled(check, cell, points, confidence,
                                                            baseline)


def decided(policy: Policy, cell: CellRecord, points_by_eval: dict[str, list[Point]],
            baseline: CellRecord | None = None) -> str | None:
    """A reason to stop ``cell`` now, or None to keep training. ``baseline``: the finished
    baseline cell of the cell's role (its unmodified model's measurements), if known."""
    if not policy.statistics.early_stop:
        return None
    readers = [c for c in policy.checks if _reads(c, policy, cell)]
    if not readers:
        return None
    conf = policy.statistics.confidence
    for check in readers:
        if not _settled(check, cell, points_by_eval.get(check.eval, []), conf, baseline):
            return None
    return "decided: " + ", ".join(sorted({c.id for c in readers}))
