"""Policy → Plan: the grid of cells, each with a deterministic id. Pure and torch-free.

A cell is one attack configuration (a point of its budget grid) × one seed × one
model (candidate or reference). Each model also gets one ``baseline`` cell that
evaluates the unmodified weights once; attack cells reuse it as their step 0.
Cell ids hash the model digest, the technique and its version, the effective
parameters, the seed, the checkpoints and the configuration of every evaluation
the cell runs, so a changed input can never reuse an old result.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from certify import __version__, registry
from certify._io import short_hash
from certify.policy.load import _budget_points
from certify.policy.schema import Every, Geometric, Policy


class CellSpec(BaseModel):
    """Everything a worker needs to run one cell (JSON-serializable, sent to Ray workers)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    role: str
    attack_id: str
    technique: str
    technique_version: int
    purpose: str
    params: dict[str, Any]
    seed: int
    max_steps: int
    checkpoints: list[int]
    evaluate: list[str]
    evaluate_final: list[str]


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policy_id: str
    cells: list[CellSpec]

    def summary(self) -> list[dict[str, Any]]:
        return [{"id": c.id, "role": c.role, "attack_id": c.attack_id} for c in self.cells]


def checkpoint_steps(spec: Any, max_steps: int) -> list[int]:
    """The steps at which a trajectory is evaluated (always including 0 and max_steps)."""
    if max_steps <= 0:
        return [0]
    if spec == "final":
        steps = [max_steps]
    elif spec == "geometric" or isinstance(spec, Geometric):
        first = spec.geometric if isinstance(spec, Geometric) else max(1, round(max_steps / 16))
        steps, s = [], first
        while s < max_steps:
            steps.append(s)
            s *= 2
    elif isinstance(spec, Every):
        steps = list(range(spec.every, max_steps, spec.every))
    else:
        steps = [int(s) for s in spec if 0 < s < max_steps]
    return sorted({0, *steps, max_steps})


def _max_steps(params: dict[str, Any], axis: str = "max_steps") -> int:
    """The end of the trajectory: ``max_steps``, or the parameter the attack declares as its
    budget axis (``trajectory=`` at registration, e.g. ``n_samples`` for a weight edit)."""
    value = params.get(axis, 0)
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _cell_id(role: str, attack_id: str, payload: dict[str, Any]) -> str:
    return f"{role[:3]}-{attack_id}-{short_hash(payload, 10)}"


def make_plan(policy: Policy, models: dict[str, str | None]) -> Plan:
    """Expand the policy's grids over the given models (role → root digest or None)."""
    evals = {k: v.model_dump(mode="json") for k, v in policy.evaluations.items()}
    roles = [r for r in ("candidate", "reference") if models.get(r)]
    version = ".".join(__version__.split(".")[:2])
    cells: list[CellSpec] = []
    baseline_evals = policy.baseline_evals()
    for role in roles:
        payload: dict[str, Any] = {"model": models[role], "role": role,
                                   "evals": {e: evals[e] for e in baseline_evals},
                                   "certify": version}
        cells.append(CellSpec(id=_cell_id(role, "baseline", payload), role=role,
                              attack_id="baseline", technique="none", technique_version=1,
                              purpose="baseline", params={}, seed=0, max_steps=0,
                              checkpoints=[0], evaluate=baseline_evals, evaluate_final=[]))
    for entry in policy.attacks:
        spec = registry.get("attack", entry.attack)
        for role in roles:
            if role not in entry.models:
                continue
            for point in _budget_points(entry.budget):
                params = spec.params.model_validate({**entry.params, **point}).model_dump(
                    mode="json")
                max_steps = _max_steps(params, spec.extra.get("trajectory", "max_steps"))
                steps = checkpoint_steps(entry.checkpoints, max_steps)
                # Step 0 is the baseline cell's measurement when it ran the same evaluations
                # on the same prompts (an attack that rewrites them measures its own step 0).
                if (set(entry.evaluate) <= set(baseline_evals)
                        and not spec.extra.get("rewrites_prompts")):
                    steps = [s for s in steps if s > 0] or steps
                for seed in entry.seeds:
                    payload = {"model": models[role], "role": role, "attack": entry.id,
                               "technique": spec.name, "version": spec.version,
                               "params": params, "seed": seed, "checkpoints": steps,
                               "evals": {e: evals[e] for e in entry.evaluate},
                               "final": {e: evals[e] for e in entry.evaluate_final},
                               "certify": version}
                    cells.append(CellSpec(
                        id=_cell_id(role, entry.id, payload), role=role, attack_id=entry.id,
                        technique=spec.name, technique_version=spec.version,
                        purpose=entry.purpose, params=params, seed=seed, max_steps=max_steps,
                        checkpoints=steps, evaluate=list(entry.evaluate),
                        evaluate_final=list(entry.evaluate_final)))
    return Plan(policy_id=policy.id, cells=cells)
