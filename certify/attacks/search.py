"""Worst-case search: an adaptive search for the most damaging fine-tuning configuration.

Like TamperBench's Optuna sweeps, but budget-indexed: each trial trains once to
``max_steps`` and is evaluated along its trajectory, so the steps bound is covered
by the checkpoints of every trial. The first ``n_initial`` trials sample the
declared bounds at random (learning rate log-uniform, batch size, LoRA rank); the
rest perturb the most damaging trial so far with a shrinking step, spending the
budget where the harm is. The cell keeps the worst trial's trajectory (so the
verdict takes it, like any other cell) and discloses every trial in its notes.
"""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from certify import registry
from certify.attacks._common import FinetuneParams, fit, tuned_model
from certify.attacks.contract import AttackRun
from certify.errors import CellError

if TYPE_CHECKING:
    from certify.train import Example, TrainState

TAMPERBENCH = "https://github.com/criticalml-uw/TamperBench"


class SearchParams(FinetuneParams):
    learning_rate_min: float = Field(default=1e-5, gt=0, le=10)
    learning_rate_max: float = Field(default=1e-2, gt=0, le=10)
    """Learning rates are drawn log-uniformly from [learning_rate_min, learning_rate_max]."""
    batch_sizes: list[int] = Field(default_factory=lambda: [8, 16], min_length=1)
    lora_ranks: list[int] = Field(default_factory=lambda: [0, 8], min_length=1)
    """0 means full-parameter fine-tuning; other values LoRA adapters of that rank."""
    n_trials: int = Field(default=6, ge=1, le=1000)
    n_initial: int = Field(default=3, ge=1, le=1000)
    """Random trials before the search starts exploiting the most damaging region."""
    objective: str | None = None
    """Evaluation id whose harmfulness is maximised; default: the cell's first harm evaluation."""

    @model_validator(mode="after")
    def _bounds(self) -> SearchParams:
        if self.learning_rate_min > self.learning_rate_max:
            raise ValueError("learning_rate_min is above learning_rate_max")
        if any(b < 1 for b in self.batch_sizes) or any(r < 0 for r in self.lora_ranks):
            raise ValueError("batch_sizes must be ≥ 1 and lora_ranks ≥ 0")
        return self


def propose(p: SearchParams, rng: random.Random, history: list[dict[str, Any]]) -> dict[str, Any]:
    """The next trial: random while exploring, then a shrinking perturbation of the worst one."""
    lo, hi = math.log10(p.learning_rate_min), math.log10(p.learning_rate_max)
    if len(history) < p.n_initial:
        return {"learning_rate": 10 ** rng.uniform(lo, hi),
                "batch_size": rng.choice(p.batch_sizes), "lora_rank": rng.choice(p.lora_ranks)}
    best = max(history, key=damage)["config"]
    width = (hi - lo) / 4 * 0.7 ** (len(history) - p.n_initial)
    log_lr = min(hi, max(lo, math.log10(best["learning_rate"]) + rng.gauss(0, width)))
    return {"learning_rate": 10 ** log_lr,
            "batch_size": best["batch_size"] if rng.random() < 0.7 else rng.choice(p.batch_sizes),
            "lora_rank": best["lora_rank"] if rng.random() < 0.7 else rng.choice(p.lora_ranks)}


def damage(trial: dict[str, Any]) -> tuple[float, float]:
    """More harm is worse; at equal harm, breaking at an earlier step is worse."""
    return (trial["worst_harmful"], -trial["worst_step"])


def _objective(run: AttackRun, p: SearchParams) -> str:
    if p.objective is not None:
        if p.objective not in run.evaluators:
            raise CellError("config", f"search objective {p.objective!r} is not among the "
                            f"cell's evaluations ({', '.join(sorted(run.evaluators))})")
        return p.objective
    measures = run.measures
    return next((e for e, m in measures.items() if m == "harm"), next(iter(measures)))


def _trial(run: AttackRun, p: SearchParams, config: dict[str, Any], objective: str,
           examples: list[Example]) -> dict[str, Any]:
    trial_p = p.model_copy(update={k: v for k, v in config.items() if k != "lora_rank"})

    def body(trial_run: AttackRun) -> TrainState:
        with tuned_model(trial_run, config["lora_rank"]) as model:
            return fit(trial_run, model, examples, trial_p)

    trial = run.trial(body)
    points = trial.rates.get(objective, [])
    worst_step, worst = max(points, key=lambda sp: (sp[1], -sp[0]), default=(0, 0.0))
    return {"config": config, "worst_harmful": worst, "worst_step": worst_step,
            "final_loss": trial.final_loss, "trial": trial}


@registry.attack("search", params=SearchParams, paper=TAMPERBENCH,
                 tags=("finetune", "search", "worst-case"))
def search(run: AttackRun, p: SearchParams) -> None:
    """Adaptive worst-case search over learning rate, batch size and LoRA rank; keeps the worst."""
    examples = run.examples(p.dataset, p.n_samples, p.categories, system=p.system_prompt)
    objective = _objective(run, p)
    rng = random.Random(f"search:{run.seed}")
    history: list[dict[str, Any]] = []
    for _ in range(p.n_trials):
        history.append(_trial(run, p, propose(p, rng, history), objective, examples))
    worst = max(history, key=damage)
    run.keep(worst["trial"])
    run.note(search={
        "objective": objective, "strategy": "random then shrinking perturbation of the worst",
        "n_trials": len(history), "worst_trial": history.index(worst),
        "trials": [{"trial": i, **{k: t[k] for k in ("config", "worst_harmful", "worst_step",
                                                    "final_loss")},
                    "early_stop": (t["trial"].early_stop.model_dump()
                                   if t["trial"].early_stop else None),
                    "checkpoints": t["trial"].checkpoints}
                   for i, t in enumerate(history)]})
