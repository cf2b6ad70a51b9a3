"""A search space over an attack's Params knobs, declared in a policy, sampled by Optuna.

A policy names the knobs to search and, for each, either the choices (a list) or a
range (``{low, high, log}``); everything else keeps its fixed value. Knob names and
every value are validated against the inner attack's Params before anything runs, so
a typo or a value the attack would refuse is a policy error (exit 2), not a failed
trial an hour in. Optuna is imported only where a study is built.
"""

from __future__ import annotations

import itertools
import math
import types
import typing
from typing import TYPE_CHECKING, Any, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

Choice = float | int | str | bool | None


class Range(BaseModel):
    """A numeric knob drawn from [low, high] (log-uniformly with ``log``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    low: float
    high: float
    log: bool = False
    grid: int = Field(default=3, ge=2, le=100)
    """Points the grid sampler takes from the range (log-spaced with ``log``)."""

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.low > self.high:
            raise ValueError(f"range low {self.low} is above high {self.high} (or not finite)")
        if self.log and self.low <= 0:
            raise ValueError("a log-scale range needs low > 0")
        return self

    def points(self, integer: bool) -> list[Choice]:
        """The grid sampler's points: ``grid`` values spread over the range."""
        lo, hi = (math.log(self.low), math.log(self.high)) if self.log else (self.low, self.high)
        values = [lo + (hi - lo) * i / (self.grid - 1) for i in range(self.grid)]
        values = [math.exp(v) for v in values] if self.log else values
        if integer:
            return list(dict.fromkeys(round(v) for v in values))
        return [float(f"{v:.6g}") for v in values]


Axis = Range | list[Choice]
"""One knob of the space: a range or the list of its choices."""

FIXED_ONLY = frozenset({"dataset", "categories", "target_modules"})
"""Knobs that are not scalars: they stay fixed for the whole search."""


def is_integer(params: type[BaseModel], knob: str) -> bool:
    """Whether the Params field ``knob`` holds integers (suggested with suggest_int)."""
    annotation = params.model_fields[knob].annotation
    args = (typing.get_args(annotation)
            if typing.get_origin(annotation) in (Union, types.UnionType) else (annotation,))
    return int in args and float not in args


def knob_problems(space: dict[str, Axis], params: type[BaseModel],
                  base: dict[str, Any]) -> list[str]:
    """Why ``space`` cannot be searched over ``params`` (empty when it can): unknown knobs,
    and every value the inner attack's Params would refuse, checked against ``base``."""
    knobs = sorted(k for k in params.model_fields if k not in FIXED_ONLY)
    problems = []
    for name, axis in space.items():
        if name not in knobs:
            near = [k for k in knobs if k.startswith(name[:4])]
            problems.append(f"space.{name}: not a knob of the inner attack's Params "
                            f"(searchable: {', '.join(near or knobs)})")
            continue
        values = (axis if isinstance(axis, list)
                  else [axis.low, axis.high] if not is_integer(params, name)
                  else [round(axis.low), round(axis.high)])
        if isinstance(axis, list) and not axis:
            problems.append(f"space.{name}: an empty list of choices")
        for value in values:
            try:
                params.model_validate({**base, name: value})
            except ValidationError as e:
                reason = "; ".join(str(err["msg"]) for err in e.errors())
                problems.append(f"space.{name}: value {value!r} is refused: {reason}")
    return problems


def distributions(space: dict[str, Axis], params: type[BaseModel],
                  ) -> dict[str, BaseDistribution]:
    """Optuna distributions for the space, knob by knob, in the policy's order."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    out: dict[str, BaseDistribution] = {}
    for name, axis in space.items():
        if isinstance(axis, list):
            out[name] = CategoricalDistribution(axis)
        elif is_integer(params, name):
            out[name] = IntDistribution(round(axis.low), round(axis.high), log=axis.log)
        else:
            out[name] = FloatDistribution(axis.low, axis.high, log=axis.log)
    return out


def grid(space: dict[str, Axis], params: type[BaseModel]) -> list[dict[str, Choice]]:
    """Every point of the grid over the space (ranges at their ``grid`` points)."""
    names = list(space)
    axes = [a if isinstance(a, list) else a.points(is_integer(params, n))
            for n, a in space.items()]
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*axes)]


def largest(space: dict[str, Axis], knob: str, fixed: Any) -> Any:
    """The largest value ``knob`` can take in the space (its fixed value when not searched),
    e.g. the most training examples any trial may draw."""
    axis = space.get(knob)
    if axis is None:
        return fixed
    if isinstance(axis, list):
        return max(v for v in axis if v is not None)
    return round(axis.high)
