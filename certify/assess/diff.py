"""What changed between two audits of two releases under the same policy. Pure, torch-free.

Per check: the verdict change and the change of its headline number, with an interval
for the difference where both sides counted items (independent samples: two releases
answer the same prompts, but their per-item outcomes are compared only when both runs
recorded them on the same item ids). Per harmful attack: the cost to break the
candidate, old and new. Checks that newly fail, and failures that vanished. Two audits
are comparable when their effective policies and their plans' shapes (role, attack,
seed of every cell) are the same; otherwise only the checks and attacks defined the
same way on both sides can be compared, and only when asked (``force``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from certify.assess.agreement import break_levels
from certify.assess.trajectory import break_point, measured
from certify.evidence import CheckResult, Evidence
from certify.policy.schema import Policy, StrongResistance
from certify.stats import Metric, difference_interval, wilson

SEVERITY = {"pass": 0, "inconclusive": 1, "fail": 2, "error": 3}


@dataclass(frozen=True)
class CheckChange:
    id: str
    check: str
    required: bool
    old: str
    new: str
    measure: str
    """What the headline number is ("worst harmful rate", "cost ratio", ...)."""
    old_value: float | None
    new_value: float | None
    difference: float | None
    ci: list[float] | None
    """Interval for new − old, where both sides counted items."""

    @property
    def regressed(self) -> bool:
        return SEVERITY[self.new] > SEVERITY[self.old]

    @property
    def improved(self) -> bool:
        return SEVERITY[self.new] < SEVERITY[self.old]


@dataclass(frozen=True)
class AttackChange:
    attack: str
    seed: int
    level: float
    old_break: int | None
    """The step at which the candidate first exceeded ``level``; None: never, in budget."""
    new_break: int | None
    old_budget: int
    new_budget: int


@dataclass
class Diff:
    comparable: bool
    problems: list[str]
    checks: list[CheckChange] = field(default_factory=list)
    attacks: list[AttackChange] = field(default_factory=list)
    old_overall: str = ""
    new_overall: str = ""

    @property
    def regressed(self) -> list[CheckChange]:
        return [c for c in self.checks if c.required and c.regressed]

    @property
    def new_failures(self) -> list[str]:
        return [c.id for c in self.checks if c.new == "fail" and c.old != "fail"]

    @property
    def vanished_failures(self) -> list[str]:
        return [c.id for c in self.checks if c.old == "fail" and c.new != "fail"]

    @property
    def exit_code(self) -> int:
        return 1 if self.regressed else 0

    def as_json(self) -> dict[str, Any]:
        return {"comparable": self.comparable, "problems": self.problems,
                "overall": {"old": self.old_overall, "new": self.new_overall},
                "regressed": [c.id for c in self.regressed], "new_failures": self.new_failures,
                "vanished_failures": self.vanished_failures,
                "checks": [{**asdict(c), "regressed": c.regressed, "improved": c.improved}
                           for c in self.checks],
                "attacks": [asdict(a) for a in self.attacks], "exit_code": self.exit_code}


def _shape(evidence: Evidence) -> Counter[tuple[str, str, int]]:
    return Counter((c.role, c.attack_id, c.seed) for c in evidence.cells)


def comparability(old: Evidence, new: Evidence, old_policy: Policy,
                  new_policy: Policy) -> list[str]:
    """Why the two audits cannot be compared as a whole (empty when they can)."""
    problems = []
    if old_policy.id != new_policy.id:
        problems.append(f"different policies: {old_policy.id} and {new_policy.id}")
    elif old_policy != new_policy:
        keys = sorted(k for k in type(new_policy).model_fields
                      if getattr(old_policy, k) != getattr(new_policy, k))
        problems.append(f"the effective policies differ in: {', '.join(keys)}")
    if _shape(old) != _shape(new):
        only_old = sorted(set(_shape(old)) - set(_shape(new)))
        only_new = sorted(set(_shape(new)) - set(_shape(old)))
        problems.append("the plans differ: cells (role, attack, seed) only in the old run: "
                        f"{only_old or 'none'}; only in the new run: {only_new or 'none'}")
    return problems


def _headline(r: CheckResult) -> tuple[str, float | None, Metric | None]:
    """The number that decided a check, and its count where it has one."""
    o = r.observed
    for key, label in (("worst", "worst harmful rate"), ("best", "reference's best harm rate")):
        row = o.get(key)
        if isinstance(row, dict) and "rate" in row:
            k, n = row.get("k"), row.get("n")
            metric = (Metric(value=row["rate"], n=int(n), k=int(k)) if k is not None and n
                      else None)
            return label, float(row["rate"]), metric
    if "difference" in o:
        return "candidate − reference", float(o["difference"]), None
    worst = o.get("worst")
    if isinstance(worst, dict):
        if worst.get("ratio") is not None:
            return "worst ratio", float(worst["ratio"]), None
        if "accuracy" in worst:
            n, correct = worst.get("n"), worst.get("correct")
            metric = (Metric(value=worst["accuracy"], n=int(n), k=int(correct))
                      if n and correct is not None else None)
            return "lowest judge accuracy", float(worst["accuracy"]), metric
    return "", None, None


def _check_change(old: CheckResult, new: CheckResult, confidence: float) -> CheckChange:
    label, a, ma = _headline(old)
    _, b, mb = _headline(new)
    diff = None if a is None or b is None else b - a
    ci = None
    if ma is not None and mb is not None:
        for m in (ma, mb):
            m.ci_low, m.ci_high = wilson(m.k or 0, m.n, confidence)
        _, lo, hi, _ = difference_interval(mb, ma, confidence)
        ci = [lo, hi]
    return CheckChange(new.id, new.check, new.required, old.verdict, new.verdict, label, a, b,
                       diff, ci)


def _break_level(policy: Policy) -> float | None:
    """The harm level at which a cell counts as broken for its cost to break.

    Cost to break is weak resistance's measure, so its break level decides (the lowest,
    when several weak-resistance checks name different levels). A strong-resistance
    ceiling is a pass mark, not a break definition: eu-ai-act's 8% ceiling would otherwise
    make a cell "broken" at a sixth of the 50% its weak-resistance check uses. Only a
    policy without weak resistance falls back to the strictest strong-resistance ceiling.
    """
    levels = break_levels(policy)
    if not levels:
        levels = [c.max_rate for c in policy.checks if isinstance(c, StrongResistance)]
    return min(levels) if levels else None


def _breaks(evidence: Evidence, level: float) -> dict[tuple[str, int], tuple[int | None, int]]:
    out = {}
    for c in evidence.cells:
        if c.role != "candidate" or c.purpose != "harmful" or c.status != "ok":
            continue
        broke = break_point(measured(c, "harm"), level)
        out[(c.attack_id, c.seed)] = (None if broke is None else broke.step, c.max_steps)
    return out


def diff(old: Evidence, new: Evidence, old_policy: Policy, new_policy: Policy, *,
         force: bool = False) -> Diff:
    """Compare two audits; when they are not comparable and not ``force``d, the result
    names why and compares nothing.

    ``old_policy`` and ``new_policy`` are the audits' typed effective policies, parsed by
    the caller (``conductor.collect.policy_of``, a layer above this one).
    """
    problems = comparability(old, new, old_policy, new_policy)
    result = Diff(not problems, problems,
                  old_overall=old.verdict.overall if old.verdict else "",
                  new_overall=new.verdict.overall if new.verdict else "")
    if problems and not force:
        return result
    confidence = new_policy.statistics.confidence
    old_defs = {c.id: c for c in old_policy.checks}
    new_defs = {c.id: c for c in new_policy.checks}
    old_checks = {r.id: r for r in (old.verdict.checks if old.verdict else [])}
    for r in new.verdict.checks if new.verdict else []:
        if r.id in old_checks and old_defs.get(r.id) == new_defs.get(r.id):
            result.checks.append(_check_change(old_checks[r.id], r, confidence))
    level = _break_level(new_policy)
    if level is not None:
        before, after = _breaks(old, level), _breaks(new, level)
        for key in sorted(set(before) & set(after)):
            (ob, obudget), (nb, nbudget) = before[key], after[key]
            result.attacks.append(AttackChange(key[0], key[1], level, ob, nb, obudget, nbudget))
    return result


def markdown(d: Diff, old_name: str, new_name: str) -> str:
    """The comparison as a Markdown comment for a pull request."""
    head = ("regressed" if d.regressed else "no regression")
    lines = [f"### certify diff: {head}", "",
             f"`{old_name}` ({d.old_overall.upper()}) → `{new_name}` ({d.new_overall.upper()})",
             ""]
    if d.problems:
        lines += [f"> not fully comparable: {p}" for p in d.problems] + [""]
    lines += ["| check | verdict | measure | old | new | change [95% CI] |",
              "|---|---|---|---:|---:|---:|"]
    for c in d.checks:
        mark = " ⚠ regressed" if c.regressed else (" ✓ improved" if c.improved else "")
        change = "—" if c.difference is None else f"{c.difference:+.3f}"
        if c.ci is not None:
            change += f" [{c.ci[0]:+.3f}, {c.ci[1]:+.3f}]"
        lines.append(f"| {c.id} | {c.old.upper()} → {c.new.upper()}{mark} | {c.measure or '—'} "
                     f"| {_num(c.old_value)} | {_num(c.new_value)} | {change} |")
    if d.attacks:
        lines += ["", "| attack (seed) | candidate broke at (old → new) |", "|---|---|"]
        lines += [f"| {a.attack} ({a.seed}) | {_step(a.old_break, a.old_budget)} → "
                  f"{_step(a.new_break, a.new_budget)} |" for a in d.attacks]
    if d.new_failures or d.vanished_failures:
        lines += ["", f"New failures: {', '.join(d.new_failures) or 'none'}. "
                      f"Vanished failures: {', '.join(d.vanished_failures) or 'none'}."]
    return "\n".join(lines) + "\n"


def _num(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def _step(step: int | None, budget: int) -> str:
    return f"step {step}" if step is not None else f"never (> {budget} steps)"
