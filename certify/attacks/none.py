"""The baseline: no attack, one evaluation of the unmodified model."""

from __future__ import annotations

from certify import registry


class NoParams(registry.Params):
    pass


@registry.attack("none", params=NoParams, tags=("baseline",))
def none(run, p: NoParams) -> None:  # type: ignore[no-untyped-def]
    """Evaluate the unmodified model once (the baseline every trajectory starts from)."""
    from certify.train import TrainState

    run.checkpoint(TrainState())
