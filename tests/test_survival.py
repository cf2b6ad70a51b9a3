"""Censored cost to break: the Kaplan–Meier median and its interval agree with lifelines
(the oracle, a dev dependency; certify's own code stays light), cells that never broke
count as censored, and the normalised harm area is (1/T)∫harm dt."""

from __future__ import annotations

import math
import random

import pytest

from certify.assess.survival import harm_area, median_cost


def test_kaplan_meier_median_and_interval_equal_lifelines() -> None:
    pytest.importorskip("lifelines")
    from lifelines import KaplanMeierFitter
    from lifelines.utils import median_survival_times

    rng = random.Random(7)
    for _ in range(30):
        n = rng.randint(1, 12)
        costs = [float(rng.choice([4, 8, 12, 16, 24, 32, 48])) for _ in range(n)]
        broke = [rng.random() < 0.7 for _ in range(n)]
        fit = KaplanMeierFitter(alpha=0.05).fit(costs, broke)
        ci = median_survival_times(fit.confidence_interval_)
        ours = median_cost(costs, broke, 0.95)
        assert ours.median == float(fit.median_survival_time_), (costs, broke)
        assert (ours.lo, ours.hi) == (float(ci.iloc[0, 0]), float(ci.iloc[0, 1])), (costs, broke)


def test_cells_that_never_broke_are_censored_not_dropped() -> None:
    # Three seeds broke at 40 steps, two held for the whole 96: the median is 40 when the
    # held cells are censored, but a mean over the broken ones alone would also say 40 and
    # hide that two of five never broke; with four of five held, the median is not reached.
    m = median_cost([40, 40, 40, 96, 96], [True, True, True, False, False])
    assert m.median == 40 and (m.n, m.events) == (5, 3)
    held = median_cost([40, 96, 96, 96, 96], [True, False, False, False, False])
    assert math.isinf(held.median) and held.as_dict()["median"] is None
    assert held.as_dict()["censored"] == 4


def test_harm_area_is_the_mean_harm_along_the_trajectory() -> None:
    assert harm_area([0, 10], [0.0, 1.0]) == pytest.approx(0.5)
    assert harm_area([0, 8, 16, 32], [0.0, 0.0, 1.0, 1.0]) == pytest.approx((4 + 16) / 32)
    assert harm_area([0], [1.0]) is None
