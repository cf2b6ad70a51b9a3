"""Harmful (or benign) fine-tuning: full-parameter SFT and LoRA."""

from __future__ import annotations

from certify import registry
from certify.attacks._common import FinetuneParams, LoraParams, fit, tuned_model
from certify.attacks.contract import AttackRun

QI_2023 = "https://arxiv.org/abs/2310.03693"


@registry.attack("sft", params=FinetuneParams, paper=QI_2023, tags=("finetune", "full"))
def sft(run: AttackRun, p: FinetuneParams) -> None:
    """Fine-tune every weight on chat examples (Qi et al. 2023 harmful-example attack)."""
    examples = run.examples(p.dataset, p.n_samples, p.categories, system=p.system_prompt)
    fit(run, run.trainable_model(), examples, p)


@registry.attack("lora", params=LoraParams, paper="https://arxiv.org/abs/2106.09685",
                 tags=("finetune", "lora", "peft"))
def lora(run: AttackRun, p: LoraParams) -> None:
    """Fine-tune low-rank adapters (peft LoRA) on chat examples; base weights stay untouched."""
    examples = run.examples(p.dataset, p.n_samples, p.categories, system=p.system_prompt)
    with tuned_model(run, p.lora_rank, p.lora_alpha, p.target_modules,
                     p.lora_dropout) as model:
        fit(run, model, examples, p)
