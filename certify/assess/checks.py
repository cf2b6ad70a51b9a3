"""One pure function per check kind: (check, context) → CheckResult with its numbers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from certify.assess.comparisons import judge_validity, over_refusal, stability, trainability
from certify.assess.context import Context
from certify.assess.resistance import (
    generalization,
    held_out_categories,
    positive_control,
    post_finetune_safety,
    strong_resistance,
    weak_resistance,
)
from certify.evidence import CheckResult

__all__ = ["CHECKS", "Context", "held_out_categories"]

CHECKS: dict[str, Callable[[Any, Context], CheckResult]] = {
    "strong_resistance": strong_resistance,
    "weak_resistance": weak_resistance,
    "positive_control": positive_control,
    "generalization": generalization,
    "stability": stability,
    "over_refusal": over_refusal,
    "trainability": trainability,
    "post_finetune_safety": post_finetune_safety,
    "judge_validity": judge_validity,
}
