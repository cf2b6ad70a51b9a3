"""The report's first page in words: what was decided, about what, why, and at what cost.

An auditor reads page 1 and should know in under a minute: the verdict and the model
and policy it is about (the verdict sentence), the three checks that decided it with
their numbers (failed required checks first, then undecided ones, then the rest), the
attacker the policy assumed and the budget it granted, and the compute the audit
actually spent (early stopping spends less than the budget; a reader must not take the
budget for what was run). Every number here is read from the evidence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from certify.evidence import CheckResult, Evidence
from certify.policy.schema import condition_name
from certify.report.text import num, one_line

MAX_ATTACKS = 4
"""Attacks the budget sentence names; the Threat model and budgets section lists them all."""
VERDICT_ORDER = {"fail": 0, "error": 1, "inconclusive": 2, "pass": 3}


@dataclass(frozen=True)
class Deciding:
    condition: str
    check: str
    verdict: str
    reason: str


@dataclass(frozen=True)
class Executive:
    verdict_sentence: str
    deciding: list[Deciding]
    deciding_title: str
    attacker: str
    budget: str
    spent: str


def deciding_checks(checks: list[CheckResult], n: int = 3) -> list[CheckResult]:
    """The ``n`` checks that explain the verdict: required before optional, a failure
    before an error, an undecided check and a pass, then in the policy's order."""
    ranked = sorted(enumerate(checks), key=lambda ic: (not ic[1].required,
                                                        VERDICT_ORDER.get(ic[1].verdict, 9), ic[0]))
    return [c for _, c in ranked[:n]]


def _names(checks: list[CheckResult]) -> str:
    return ", ".join(one_line(c.id, 60) for c in checks)


def verdict_sentence(evidence: Evidence) -> str:
    candidate = one_line((evidence.models.get("candidate") or {}).get("spec"), 120)
    policy = one_line(f"{evidence.policy.get('id')} {evidence.policy.get('version', '')}", 80)
    v = evidence.verdict
    if v is None:
        return (f"The audit of {candidate} under policy {policy} did not complete: no check "
                "was decided, and no verdict is given.")
    required = [c for c in v.checks if c.required]
    failed = [c for c in required if c.verdict == "fail"]
    errored = [c for c in required if c.verdict == "error"]
    open_ = [c for c in required if c.verdict == "inconclusive"]
    if failed:
        return (f"{candidate} FAILS policy {policy}: {len(failed)} of its {len(required)} "
                f"required checks failed ({_names(failed)}).")
    if errored:
        return (f"{candidate} gets no pass under policy {policy}: {len(errored)} of its "
                f"{len(required)} required checks could not be run ({_names(errored)}).")
    if open_:
        return (f"{candidate} is INCONCLUSIVE under policy {policy}: no required check failed, "
                f"but {len(open_)} of {len(required)} could not be decided with the samples "
                f"measured ({_names(open_)}).")
    return f"{candidate} PASSES policy {policy}: all {len(required)} required checks passed."


def attacker(evidence: Evidence) -> str:
    threat = evidence.policy.get("effective", {}).get("threat_model", {})
    access = str(threat.get("access", "")).replace("_", " ")
    profile = threat.get("attacker_profile") or ""
    hours = threat.get("max_gpu_hours_per_cell")
    parts = [p for p in (f"{access} access" if access else "", profile) if p]
    if hours:
        parts.append(f"at most {num(hours)} GPU-hours per attack run")
    return one_line("; ".join(parts) or "not stated by the policy", 400) + "."


def budget(evidence: Evidence) -> str:
    harmful = [a for a in evidence.attacks if a.get("purpose") == "harmful"]
    if not harmful:
        return "The policy runs no harmful fine-tuning attack."
    lines = []
    for a in harmful[:MAX_ATTACKS]:
        b: dict[str, Any] = a.get("budget") or {}
        steps = b.get("max_steps")
        seeds = len(a.get("seeds") or []) or 1
        lr = b.get("learning_rate")
        lines.append(f"{one_line(a.get('id'), 60)} ({one_line(a.get('technique'), 30)}"
                     + (f", up to {num(steps)} optimizer steps" if steps else "")
                     + (f" at learning rate {num(lr)}" if lr else "")
                     + f", {seeds} seed{'s' if seeds > 1 else ''})")
    if len(harmful) > MAX_ATTACKS:
        lines.append(f"and {len(harmful) - MAX_ATTACKS} more (see Threat model and budgets)")
    models = ("the candidate and the reference" if evidence.models.get("reference")
              else "the candidate")
    return one_line(f"{len(harmful)} harmful fine-tuning attack{'s' if len(harmful) > 1 else ''}"
                    f" on {models}: {'; '.join(lines)}.", 1200)


def spent(evidence: Evidence) -> str:
    """What the attacks and evaluations cost, summed over every cell that ran."""
    cells = [c for c in evidence.cells if c.checkpoints or c.seconds]
    harmful = [c for c in cells if c.purpose == "harmful"]
    trained = sum(c.checkpoints[-1].step for c in harmful if c.checkpoints)
    allowed = sum(c.max_steps for c in harmful)
    tokens = sum(c.checkpoints[-1].tokens for c in cells if c.checkpoints)
    flop = sum(c.checkpoints[-1].flop for c in cells if c.checkpoints)
    seconds = sum(c.seconds for c in cells)
    device = one_line(evidence.run.get("device") or "an unrecorded device", 40)
    stopped = sum(1 for c in harmful if c.early_stop)
    early = (f"; early stopping ended {stopped} of them once every check reading them was "
             "decided" if stopped else "")
    return one_line(
        f"{len(cells)} cells ran. The harmful attacks trained {num(trained)} optimizer steps of "
        f"the {num(allowed)} their budgets allowed across {len(harmful)} attack runs{early}. "
        f"In all: {num(tokens)} training tokens, {num(float(flop))} FLOP, "
        f"{_duration(seconds)} of compute on {device}.", 1200)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} minutes"
    return f"{seconds / 3600:.1f} hours"


def executive(evidence: Evidence) -> Executive:
    checks = evidence.verdict.checks if evidence.verdict else []
    chosen = deciding_checks(checks)
    title = {3: "The three checks that decided it", 2: "The two checks that decided it",
             1: "The check that decided it"}.get(len(chosen), "No check was decided")
    return Executive(
        verdict_sentence=verdict_sentence(evidence),
        deciding=[Deciding(condition_name(c.condition), one_line(c.id, 80), c.verdict.upper(),
                           one_line(c.reason, 400)) for c in chosen],
        deciding_title=title, attacker=attacker(evidence), budget=budget(evidence),
        spent=spent(evidence))
