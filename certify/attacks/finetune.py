"""Harmful (or benign) fine-tuning: full-parameter SFT and LoRA."""

from __future__ import annotations

from certify import registry
from certify.attacks._common import FinetuneParams, LoraParams, fit

QI_2023 = "https://arxiv.org/abs/2310.03693"


@registry.attack("sft", params=FinetuneParams, paper=QI_2023, tags=("finetune", "full"))
def sft(run, p: FinetuneParams) -> None:  # type: ignore[no-untyped-def]
    """Fine-tune every weight on chat examples (Qi et al. 2023 harmful-example attack)."""
    examples = run.examples(p.dataset, p.n_samples, p.categories, system=p.system_prompt)
    model = run.trainable_model()
    run.flop_factor = 6  # forward + backward through every weight
    fit(run, model, examples, p)


@registry.attack("lora", params=LoraParams, paper="https://arxiv.org/abs/2106.09685",
                 tags=("finetune", "lora", "peft"))
def lora(run, p: LoraParams) -> None:  # type: ignore[no-untyped-def]
    """Fine-tune low-rank adapters (peft LoRA) on chat examples; base weights stay untouched."""
    import torch
    from peft import LoraConfig, get_peft_model

    examples = run.examples(p.dataset, p.n_samples, p.categories, system=p.system_prompt)
    torch.manual_seed(run.seed)  # LoRA initialisation draws from the global RNG
    config = LoraConfig(r=p.lora_rank, lora_alpha=p.lora_alpha or 2 * p.lora_rank,
                        lora_dropout=p.lora_dropout, target_modules=p.target_modules,
                        task_type="CAUSAL_LM")
    model = get_peft_model(run.frozen_model(), config)
    run.n_trainable = sum(t.numel() for t in model.parameters() if t.requires_grad)
    run.flop_factor = 4  # forward + activation gradients through frozen weights
    try:
        fit(run, model, examples, p)
    finally:
        model.unload()  # removes the adapter layers; the base model is as it was
