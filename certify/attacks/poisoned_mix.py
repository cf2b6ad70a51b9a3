"""Poisoned mix: benign task data with a fraction of harmful examples (fine-tuning as a service)."""

from __future__ import annotations

import random

from pydantic import Field

from certify import registry
from certify.attacks._common import FinetuneParams, fit, tuned_model
from certify.attacks.contract import AttackRun
from certify.data.load import DatasetRef

HUANG_2024 = "https://arxiv.org/abs/2409.18169"


class PoisonedMixParams(FinetuneParams):
    dataset: DatasetRef = Field(default_factory=lambda: DatasetRef(source="builtin:benign-train"))
    """The user's benign task data."""
    harmful_dataset: DatasetRef = Field(
        default_factory=lambda: DatasetRef(source="builtin:harm-train"))
    """Harmful (prompt, response) pairs slipped into it; `categories` filters these."""
    poison_fraction: float = Field(default=0.1, ge=0, le=1)
    """Fraction p of the n_samples training examples that are harmful (survey default 0.1)."""
    n_samples: int = Field(default=500, ge=1, le=10_000_000)
    """Total examples, benign plus harmful (survey default 1000 on real data)."""
    lora_rank: int = Field(default=0, ge=0, le=4096)
    """0 trains every weight; otherwise LoRA adapters of this rank (as most services do)."""


def split_counts(n: int, fraction: float) -> tuple[int, int]:
    """(benign, harmful) counts; any positive fraction poisons at least one example."""
    harmful = round(n * fraction)
    if fraction > 0 and harmful == 0:
        harmful = 1
    return n - harmful, harmful


@registry.attack("poisoned_mix", params=PoisonedMixParams, paper=HUANG_2024,
                 tags=("finetune", "poison", "ftaas"))
def poisoned_mix(run: AttackRun, p: PoisonedMixParams) -> None:
    """Fine-tune on benign task data in which a fraction p of the examples is harmful."""
    n_benign, n_harmful = split_counts(p.n_samples, p.poison_fraction)
    harmful = run.examples(p.harmful_dataset, n_harmful, p.categories,
                           system=p.system_prompt) if n_harmful else []
    benign = run.examples(p.dataset, n_benign, system=p.system_prompt) if n_benign else []
    examples = benign + harmful
    random.Random(f"mix:{run.seed}").shuffle(examples)
    run.note(poison={"fraction": p.poison_fraction, "benign": n_benign, "harmful": n_harmful})
    with tuned_model(run, p.lora_rank) as model:
        fit(run, model, examples, p)
