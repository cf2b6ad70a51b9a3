"""Could a verdict flip on another machine? Move every count by the tolerance and see.

The same cell run from the same seeds on other hardware, threads or kernels gives
numbers that move a little (docs/reliability.md measures how far; the policy declares
the bound as ``statistics.reproducibility``). A check whose interval sits within that
movement of its threshold may read differently on the auditor's machine. Rather than
hide it, each check is decided again with every count of one role moved up or down by
the tolerance (and both roles in opposite directions, which moves a ratio of the two
the most); a check whose verdict changes is *fragile*, and the report lists it under
limitations. Pure and torch-free.

Each count moves by the tolerance of what measured it (``Reproducibility.count``): a
judged count by the judged tolerance, a capability count (lm-eval's log-likelihood
scoring, deterministic given the weights) by its own, much smaller one. Moving a
capability count by the judged tolerance (15% of n) moved every capability-bounded
worst case with ε under about 15 points across its bound, so the bounded check was
always "fragile", whatever the measurements, a flag that said nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from certify.evidence import CellRecord, CheckResult, Evidence
from certify.policy.schema import Policy, Reproducibility
from certify.stats import Metric, wilson

SHIFTS = ((1, 0), (-1, 0), (0, 1), (0, -1), (1, -1), (-1, 1))
"""(candidate, reference) directions: each role alone, then both in opposite directions."""


UNSCORED = "unscored"
"""Unscored responses count as harmful (never as safe) and are not a judged count: kept."""


def _room(metrics: dict[str, Metric], metric: Metric) -> int:
    """The largest count ``metric`` can take beside the unscored items of the same sample."""
    unscored = metrics.get(UNSCORED)
    return metric.n - ((unscored.k or 0) if unscored is not None else 0)


def _moved(metric: Metric, by: int, room: int) -> Metric:
    k = min(max((metric.k or 0) + by, 0), room)
    lo, hi = wilson(k, metric.n)
    outcomes = metric.outcomes
    if outcomes and len(outcomes) == metric.n:
        flip, to = ("0", "1") if by > 0 else ("1", "0")
        chars, left = list(outcomes), abs(k - (metric.k or 0))
        for i, c in enumerate(chars):
            if left and c == flip:
                chars[i], left = to, left - 1
        outcomes = "".join(chars)
    return metric.model_copy(update={"k": k, "value": k / metric.n if metric.n else 0.0,
                                     "ci_low": lo, "ci_high": hi, "outcomes": outcomes})


def shifted(cells: list[CellRecord], tolerance: Reproducibility,
            direction: dict[str, int]) -> list[CellRecord]:
    """Copies of ``cells`` with every count of a role moved by its tolerance in that role's
    direction (a group by its share of the pooled tolerance)."""
    out = []
    for cell in cells:
        sign = direction.get(cell.role, 0)
        if sign == 0 or cell.status != "ok":
            out.append(cell)
            continue
        cell = cell.model_copy(deep=True)
        for cp in cell.checkpoints:
            for record in cp.evals.values():
                for name, metric in list(record.metrics.items()):
                    if metric.k is None or not metric.n or name == UNSCORED:
                        continue
                    allowed = tolerance.count(metric.n, cp.step > 0, record.measures)
                    if not allowed:
                        continue
                    record.metrics[name] = _moved(metric, sign * allowed,
                                                  _room(record.metrics, metric))
                    for groups in record.groups.values():
                        for metrics in groups.values():
                            g = metrics.get(name)
                            if g is not None and g.k is not None and g.n:
                                share = math.ceil(allowed * g.n / metric.n)
                                metrics[name] = _moved(g, sign * share, _room(metrics, g))
        out.append(cell)
    return out


Decide = Callable[[Policy, list[CellRecord], list[dict[str, Any]], bool], list[CheckResult]]
"""How checks are decided (certify.assess.run_checks, passed in: no import cycle)."""


def fragile_checks(evidence: Evidence, policy: Policy, results: list[CheckResult],
                   run_checks: Decide) -> dict[str, list[str]]:
    """check id → the verdicts it takes under the shifts, for checks whose verdict changes."""
    tolerance = policy.statistics.reproducibility
    planned = evidence.run.get("plan", [])
    has_reference = evidence.models.get("reference") is not None
    decided = {r.id: r.verdict for r in results if r.verdict != "error"}
    flips: dict[str, set[str]] = {}
    for cand, ref in SHIFTS:
        cells = shifted(evidence.cells, tolerance, {"candidate": cand, "reference": ref})
        for r in run_checks(policy, cells, planned, has_reference):
            if r.id in decided and r.verdict not in (decided[r.id], "error"):
                flips.setdefault(r.id, set()).add(r.verdict)
    return {k: sorted(v) for k, v in flips.items()}


def limitations(results: list[CheckResult], flips: dict[str, list[str]],
                tolerance: Reproducibility) -> list[str]:
    out = []
    for r in results:
        if r.id in flips:
            out.append(f"Check {r.id} ({r.verdict.upper()}) is within the reproducibility "
                       f"tolerance of its threshold: with every judged count after training "
                       f"moved by max({tolerance.judged_min}, {tolerance.judged_share:.0%} of n), "
                       f"every capability count by max({tolerance.capability_min}, "
                       f"{tolerance.capability_share:.0%} of n), and those of the unmodified "
                       f"model by {tolerance.untrained_judged}, as a re-run on other hardware "
                       f"may move them, it reads "
                       f"{' or '.join(v.upper() for v in flips[r.id])}.")
    return out
