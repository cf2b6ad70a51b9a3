"""Cost to break as time-to-event data: Kaplan–Meier medians with right-censoring.

Each attacked cell is one subject: it breaks at the first checkpoint past the harm level
(the event, at that checkpoint's cost) or holds for its whole budget (right-censored at
the cost it spent). A mean over cells would have to drop or guess the cells that never
broke; the Kaplan–Meier estimator uses them as what they are, "more than this". The
median's interval is where the exponential-Greenwood (log-log) bands of the survival
curve cross one half, as lifelines computes it (tests/test_survival.py checks the two
agree), so a median the data cannot bound above reads as infinite, never as the budget.
Pure Python: the assessment stays light.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from certify.stats import z_value


@dataclass(frozen=True)
class Median:
    """Kaplan–Meier median cost to break with its interval (inf: not reached)."""

    median: float
    lo: float
    hi: float
    n: int
    events: int

    def as_dict(self) -> dict[str, Any]:
        def finite(x: float) -> float | None:
            return x if math.isfinite(x) else None

        return {"median": finite(self.median), "ci": [finite(self.lo), finite(self.hi)],
                "n": self.n, "broke": self.events, "censored": self.n - self.events}


def kaplan_meier(durations: Sequence[float], broke: Sequence[bool],
                 confidence: float = 0.95) -> list[tuple[float, float, float, float]]:
    """(time, survival, lower band, upper band) at each distinct observed time, from 0."""
    times = sorted(set(durations))
    z = z_value(confidence)
    at_risk, log_survival, greenwood = len(durations), 0.0, 0.0
    curve = [(0.0, 1.0, 1.0, 1.0)]
    for t in times:
        d = sum(1 for x, e in zip(durations, broke, strict=True) if x == t and e)
        if d:  # summed in logs, as lifelines does: a curve at exactly 1/2 reads the same
            log_survival += (math.log(at_risk - d) - math.log(at_risk) if at_risk > d
                             else -math.inf)
            greenwood = greenwood + d / (at_risk * (at_risk - d)) if at_risk > d else math.inf
        survival = math.exp(log_survival)
        curve.append((t, survival, *_bands(survival, greenwood, z)))
        at_risk -= sum(1 for x in durations if x == t)
    return curve


def _bands(s: float, greenwood: float, z: float) -> tuple[float, float]:
    """Exponential Greenwood (log(-log S)) bands, as lifelines computes them."""
    if s >= 1.0:
        return 1.0, 1.0
    if s <= 0.0 or not math.isfinite(greenwood):
        return 0.0, 0.0
    v = math.log(s)
    spread = z * math.sqrt(greenwood) / v
    return math.exp(-math.exp(math.log(-v) - spread)), math.exp(-math.exp(math.log(-v) + spread))


def median_cost(durations: Sequence[float], broke: Sequence[bool],
                confidence: float = 0.95) -> Median:
    """The Kaplan–Meier median and its interval (inf where a curve never reaches one half)."""
    curve = kaplan_meier(durations, broke, confidence)

    def crossing(column: int) -> float:
        return next((row[0] for row in curve if row[column] <= 0.5), math.inf)

    return Median(crossing(1), crossing(2), crossing(3), len(durations), sum(map(bool, broke)))


def harm_area(steps: Sequence[int], rates: Sequence[float]) -> float | None:
    """(1/T)∫harm dt over a trajectory (trapezoids between checkpoints, from step 0 to its
    last step T): the mean harm an attacker saw along the way, 0 to 1."""
    pairs = sorted(zip(steps, rates, strict=True))
    if len(pairs) < 2 or pairs[-1][0] <= pairs[0][0]:
        return None
    area = sum((b[0] - a[0]) * (a[1] + b[1]) / 2 for a, b in itertools.pairwise(pairs))
    return area / (pairs[-1][0] - pairs[0][0])
