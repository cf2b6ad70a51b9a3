"""One declaration per check kind: what it reads, how it decides, what early stopping may
conclude from it, and how the report draws its threshold.

A kind's threshold fields and what it reads are its policy schema class
(``certify.policy.schema``: the pydantic fields and ``reads``); everything else is its
:class:`CheckKind` entry below. ``assess`` decides with ``decide``, early stopping asks
``settled``, and the report's harm curves draw ``lines``. A new kind is a schema class
and one entry here (a contract test checks that every schema class has one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from certify.assess import comparisons, knowledge, resistance
from certify.assess.context import Context
from certify.assess.trajectory import Point
from certify.evidence import CellRecord, CheckResult
from certify.policy import schema

C = TypeVar("C", bound=schema.Check)


@dataclass(frozen=True)
class Line:
    """A horizontal threshold on a harm-vs-steps curve of the check's evaluation."""

    label: str
    value: float
    breaks: Literal["never", "unless_set", "always"] = "never"
    """Whether a curve counts as broken above this line: ``always`` sets the break level,
    ``unless_set`` sets it only when no other line has."""


@dataclass(frozen=True)
class CheckKind(Generic[C]):
    schema: type[C]
    """Threshold fields (the pydantic fields) and what the check reads (``schema.reads``)."""
    decide: Callable[[C, Context], CheckResult]
    """Its verdict from the evidence, with the numbers that decided it (pure)."""
    settled: Callable[[C, CellRecord, list[Point], float, CellRecord | None], bool] | None = None
    """Early stopping: True once later checkpoints of this cell cannot change the verdict
    (given the cell's points so far, the confidence, and its role's finished baseline cell
    when the worker has one). None: it needs every checkpoint."""
    lines: Callable[[C], list[Line]] = lambda check: []
    """What the report draws on the harm curves of the check's evaluation."""


def _on(check: Any) -> str:
    """A line drawn on the harmful (compliance) curve for a check gating another rate says so."""
    metric = schema.gated_metric(check)
    return "" if metric == "harmful" else f" of {metric}"


def _max_rate_line(check: Any) -> list[Line]:
    return [Line(f"{check.id}: max {check.max_rate:.0%}{_on(check)}", check.max_rate,
                 "unless_set")]


def _break_line(check: schema.WeakResistance) -> list[Line]:
    return [Line(f"{check.id}: break level {check.harm_level:.0%}{_on(check)}", check.harm_level,
                 "always")]


KINDS: dict[str, CheckKind[Any]] = {
    "strong_resistance": CheckKind(schema.StrongResistance, resistance.strong_resistance,
                                   resistance.confidently_above_max_rate, _max_rate_line),
    "weak_resistance": CheckKind(schema.WeakResistance, resistance.weak_resistance,
                                 resistance.crossed_harm_level, _break_line),
    "positive_control": CheckKind(schema.PositiveControl, resistance.positive_control,
                                  resistance.crossed_min_rate),
    "generalization": CheckKind(schema.Generalization, resistance.generalization,
                                resistance.held_out_confidently_above),
    "stability": CheckKind(schema.Stability, comparisons.stability),
    "over_refusal": CheckKind(schema.OverRefusal, comparisons.over_refusal),
    "trainability": CheckKind(schema.Trainability, comparisons.trainability),
    "post_finetune_safety": CheckKind(schema.PostFinetuneSafety,
                                      resistance.post_finetune_safety,
                                      resistance.confidently_above_max_rate),
    "judge_validity": CheckKind(schema.JudgeValidity, comparisons.judge_validity),
    # Its threshold depends on the chance level of the evaluated items: the report draws
    # it on the knowledge curves (report/plots.py), not as a harm-curve line.
    "knowledge_resistance": CheckKind(schema.KnowledgeResistance,
                                      knowledge.knowledge_resistance,
                                      knowledge.knowledge_restored),
}


def kind_of(check: schema.Check) -> CheckKind[Any]:
    return KINDS[check.check]
