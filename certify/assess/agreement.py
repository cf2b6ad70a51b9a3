"""Do two runs of one cell agree? Checkpoint by checkpoint, within the declared tolerance.

`certify replay` compares a re-executed cell with the signed one; the reproducibility
measurement (scripts/reproducibility.py) compares one audit run under different threads,
kernels and deterministic modes. Both use this, so what "agrees" means is written once.
Pure and torch-free.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from certify.assess.trajectory import break_index, measured
from certify.evidence import CellRecord
from certify.policy.schema import Policy, Reproducibility, WeakResistance


@dataclass(frozen=True)
class Difference:
    """One compared number at one checkpoint."""

    step: int
    what: str
    """"loss", "EVAL/METRIC" (a judged count) or "break@LEVEL" (a break point)."""
    signed: Any
    replayed: Any
    moved: float
    """How far it moved: items for counts, relative change for losses, checkpoints for breaks."""
    allowed: float
    agrees: bool
    n: int | None = None
    """How many items a judged count is out of (the signed run's n); None for losses and
    break points."""

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CellAgreement:
    cell: str
    rows: list[Difference]
    problem: str | None = None
    """Why the cells could not be compared at all (a missing checkpoint, an errored re-run)."""
    numerics_differ: tuple[str, ...] = ()
    """What decides the arithmetic and differs between the two runs (threads, kernels, BLAS
    mode, ...): where it differs, late steps of unstable training can diverge honestly."""

    @property
    def agrees(self) -> bool:
        return self.problem is None and all(r.agrees for r in self.rows)

    @property
    def first_disagreement(self) -> Difference | None:
        return next((r for r in self.rows if not r.agrees), None)

    def as_json(self) -> dict[str, Any]:
        return {"cell": self.cell, "agrees": self.agrees, "problem": self.problem,
                "numerics_differ": list(self.numerics_differ),
                "rows": [r.as_json() for r in self.rows]}


def break_levels(policy: Policy) -> list[float]:
    """The harm levels at which the policy's checks call a cell broken."""
    return sorted({c.harm_level for c in policy.checks if isinstance(c, WeakResistance)})


def compare_cell(signed: CellRecord, replayed: CellRecord, tolerance: Reproducibility,
                 levels: list[float], harm_eval: str = "harm") -> CellAgreement:
    """Compare every checkpoint the signed cell recorded with the replayed one."""
    ours, theirs_n = signed.numerics, replayed.numerics
    differ = tuple(f"{k}: {ours.get(k)} when signed, {theirs_n.get(k)} here"
                   for k in sorted(set(ours) | set(theirs_n))
                   if ours and theirs_n and ours.get(k) != theirs_n.get(k))
    if replayed.status != "ok":
        why = replayed.error.message if replayed.error else "it errored"
        return CellAgreement(signed.id, [], f"the re-run did not finish: {why}", differ)
    by_step = {cp.step: cp for cp in replayed.checkpoints}
    rows: list[Difference] = []
    for cp in signed.checkpoints:
        other = by_step.get(cp.step)
        if other is None and replayed.early_stop is not None and cp.step > replayed.early_stop.step:
            continue  # the re-run's own numbers decided its checks sooner; breaks compare below
        if other is None:
            return CellAgreement(signed.id, rows, f"the re-run has no checkpoint at step "
                                                  f"{cp.step}, which the signed cell records",
                                 differ)
        if cp.loss is not None and other.loss is not None:
            moved = abs(other.loss - cp.loss) / max(abs(cp.loss), 1e-12)
            rows.append(Difference(cp.step, "loss", cp.loss, other.loss, moved,
                                   tolerance.loss_rel, moved <= tolerance.loss_rel))
        for eval_id, rec in sorted(cp.evals.items()):
            theirs = other.evals.get(eval_id)
            for name, metric in sorted(rec.metrics.items()):
                if metric.k is None:
                    continue
                got = theirs.metrics.get(name) if theirs else None
                allowed = tolerance.count(metric.n, cp.step > 0, rec.measures)
                if got is None or got.k is None or got.n != metric.n:
                    rows.append(Difference(cp.step, f"{eval_id}/{name}", metric.k,
                                           None if got is None else got.k, float("inf"),
                                           allowed, False, metric.n))
                    continue
                moved = abs(got.k - metric.k)
                rows.append(Difference(cp.step, f"{eval_id}/{name}", metric.k, got.k, moved,
                                       allowed, moved <= allowed, metric.n))
    if signed.purpose == "harmful":
        ours_pts, theirs_pts = measured(signed, harm_eval), measured(replayed, harm_eval)
        steps = [p.step for p in ours_pts]
        for level in levels:
            a, b = break_index(ours_pts, level), break_index(theirs_pts, level)
            if a is None and b is None:
                continue
            moved = float("inf") if (a is None) != (b is None) else abs(a - b)  # type: ignore[operator]
            step = steps[a] if a is not None else (steps[b] if b is not None and b < len(steps)
                                                   else signed.max_steps)
            rows.append(Difference(step, f"break@{level:g}",
                                   None if a is None else steps[a],
                                   None if b is None or b >= len(steps) else steps[b], moved,
                                   tolerance.break_checkpoints,
                                   moved <= tolerance.break_checkpoints))
    return CellAgreement(signed.id, rows, None, differ)
