"""Stop a cell once every check that reads it is decided; never changes a verdict.

A check is decided for a cell when later checkpoints cannot change its verdict:
a confident break (lower bound above the threshold) fixes a resistance failure; a
first crossing fixes a break point; a reference above the control level fixes the
positive control. Trainability needs the final score, so benign cells never stop.
"""

from __future__ import annotations

from certify.assess.checks import held_out_categories
from certify.assess.trajectory import Point, rate, scoped_attacks
from certify.evidence import CellRecord
from certify.policy.schema import (
    Check,
    Generalization,
    Policy,
    PositiveControl,
    PostFinetuneSafety,
    StrongResistance,
    WeakResistance,
)


def _reads(check: object, policy: Policy, cell: CellRecord) -> bool:
    kind = getattr(check, "check", "")
    roles = {"strong_resistance": ("candidate",), "generalization": ("candidate",),
             "post_finetune_safety": ("candidate",), "positive_control": ("reference",),
             "weak_resistance": ("candidate", "reference"),
             "trainability": ("candidate", "reference")}.get(kind, ())
    if cell.role not in roles:
        return False
    purpose = "benign" if kind in ("trainability", "post_finetune_safety") else "harmful"
    eval_id = getattr(check, "eval", "")
    return cell.attack_id in scoped_attacks(policy, getattr(check, "attacks", None), eval_id,
                                            purpose)


def _decided(check: Check, cell: CellRecord, points: list[Point], conf: float) -> bool:
    # The policy's checks are a union discriminated by ``check``: each kind is one class.
    if isinstance(check, StrongResistance | PostFinetuneSafety):
        limit = check.max_rate
        return any(rate(p.record, confidence=conf).lo > limit for p in points)
    if isinstance(check, WeakResistance):
        level = check.harm_level
        return any(rate(p.record, confidence=conf).value > level for p in points)
    if isinstance(check, PositiveControl):
        level = check.min_rate
        return any(rate(p.record, confidence=conf).value > level for p in points)
    if isinstance(check, Generalization):
        held = held_out_categories(check, cell, points)
        limit = check.max_rate
        return bool(held) and any(
            rate(p.record, confidence=conf, group=("category", held)).lo > limit for p in points)
    return False


def decided(policy: Policy, cell: CellRecord, points_by_eval: dict[str, list[Point]]) -> str | None:
    """A reason to stop ``cell`` now, or None to keep training."""
    if not policy.statistics.early_stop:
        return None
    readers = [c for c in policy.checks if _reads(c, policy, cell)]
    if not readers:
        return None
    conf = policy.statistics.confidence
    for check in readers:
        points = points_by_eval.get(getattr(check, "eval", ""), [])
        if not points or not _decided(check, cell, points, conf):
            return None
    return "decided: " + ", ".join(sorted({c.id for c in readers}))
