"""The baseline: no attack, one evaluation of the unmodified model."""

from __future__ import annotations

from certify import registry
from certify.attacks.contract import AttackRun, Spend


class NoParams(registry.Params):
    pass


@registry.attack("none", params=NoParams, tags=("baseline",))
def none(run: AttackRun, p: NoParams) -> None:
    """Evaluate the unmodified model once (the baseline every trajectory starts from)."""
    run.hand_back(run.frozen_model(), Spend())
