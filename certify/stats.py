"""Confidence intervals and the metric record every evaluation produces. Torch-free."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_serializer

Decision = Literal["pass", "fail", "inconclusive"]


def pct(x: Any, digits: int = 1) -> str:
    """A proportion as a percentage ("12.5%"); "—" for anything but a finite number."""
    if not isinstance(x, int | float) or isinstance(x, bool) or not math.isfinite(x):
        return "—"
    return f"{100 * x:.{digits}f}%"


def z_value(confidence: float) -> float:
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for k successes out of n (n = 0 gives the vacuous [0, 1])."""
    if n <= 0:
        return 0.0, 1.0
    z = z_value(confidence)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At k = 0 or k = n the bound is exactly 0 or 1; say so rather than 0.9999999999999999.
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return lo, hi


class Metric(BaseModel):
    """One number with its sample size and 95% interval.

    For proportions ``k`` is the count and the interval is Wilson's. ``outcomes`` is
    the per-item 0/1 string in ``ids`` order, so paired comparisons (candidate vs
    reference on the same items) can be computed from the evidence alone.
    """

    model_config = ConfigDict(extra="forbid")

    value: float
    n: int
    k: int | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    stderr: float | None = None
    outcomes: str | None = None
    ids_sha256: str | None = None

    @model_serializer(mode="wrap")
    def _omit_absent(self, handler: Any) -> dict[str, Any]:
        # Metrics repeat thousands of times in an evidence file; absent fields add nothing.
        data: dict[str, Any] = handler(self)
        return {k: v for k, v in data.items() if v is not None}


def proportion(k: int, n: int, confidence: float = 0.95, outcomes: str | None = None,
               ids_sha256: str | None = None) -> Metric:
    lo, hi = wilson(k, n, confidence)
    return Metric(value=k / n if n else 0.0, n=n, k=k, ci_low=lo, ci_high=hi,
                  outcomes=outcomes, ids_sha256=ids_sha256)


def decide_upper(lo: float, hi: float, threshold: float) -> Decision:
    """Gate "value ≤ threshold": pass when the whole interval is under, fail when above."""
    if hi <= threshold:
        return "pass"
    if lo > threshold:
        return "fail"
    return "inconclusive"


def decide_lower(lo: float, hi: float, threshold: float) -> Decision:
    """Gate "value ≥ threshold"."""
    if lo >= threshold:
        return "pass"
    if hi < threshold:
        return "fail"
    return "inconclusive"


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and normal-approximation interval of per-item values (paired differences)."""
    n = len(values)
    if n == 0:
        return 0.0, -math.inf, math.inf
    mean = sum(values) / n
    if n == 1:
        return mean, -math.inf, math.inf
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    half = z_value(confidence) * math.sqrt(var / n)
    return mean, mean - half, mean + half


def paired_values(a: Metric, b: Metric) -> tuple[list[int], list[int]] | None:
    """Per-item 0/1 outcomes of a and b on the same items, or None if not comparable."""
    if (a.outcomes is None or b.outcomes is None or a.ids_sha256 is None
            or a.ids_sha256 != b.ids_sha256 or len(a.outcomes) != len(b.outcomes)):
        return None
    return [int(c) for c in a.outcomes], [int(c) for c in b.outcomes]


def difference_interval(a: Metric, b: Metric, confidence: float = 0.95,
                        weight_b: float = 1.0) -> tuple[float, float, float, str]:
    """Interval for a − weight_b·b; paired per item when possible, else independent."""
    pair = paired_values(a, b)
    if pair is not None:
        mean, lo, hi = mean_interval([x - weight_b * y for x, y in zip(*pair, strict=True)],
                                     confidence)
        return mean, lo, hi, "paired"
    diff = a.value - weight_b * b.value
    sa = a.stderr if a.stderr is not None else _binomial_se(a)
    sb = b.stderr if b.stderr is not None else _binomial_se(b)
    half = z_value(confidence) * math.sqrt(sa ** 2 + (weight_b * sb) ** 2)
    return diff, diff - half, diff + half, "independent"


@dataclass(frozen=True)
class Drop:
    """How far a capability fell below the unattacked model's, with its interval."""

    drop: float
    lo: float
    hi: float
    method: str

    def beyond(self, epsilon: float) -> bool:
        """Confidently more than ``epsilon``: the whole interval lies above it."""
        return self.lo > epsilon + 1e-12


def capability_drop(base: Metric, value: Metric, confidence: float = 0.95) -> Drop:
    """base − value, paired on the same items when both kept them (as the stability check
    compares), else independent. A capability bound sets a checkpoint aside only when the
    drop is confidently beyond ε (:meth:`Drop.beyond`): a point estimate would let a few
    items of measurement noise move a harmful checkpoint out of the worst case."""
    return Drop(*difference_interval(base, value, confidence))


def _binomial_se(m: Metric) -> float:
    if m.n <= 0:
        return math.inf
    p = min(max(m.value, 0.5 / m.n), 1 - 0.5 / m.n)
    return math.sqrt(p * (1 - p) / m.n)
