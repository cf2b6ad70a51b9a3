"""Batched greedy generation with left padding and the KV cache."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from certify import _fault, stopping
from certify.models.chat import format_prompt


@torch.no_grad()
def generate(model: Any, tokenizer: Any, prompts: Sequence[str], *, system: str | None = None,
             max_new_tokens: int = 48, batch_size: int = 64, device: str = "cpu") -> list[str]:
    """Greedy completions for ``prompts``, in order. Prompts are length-sorted into batches."""
    texts = [format_prompt(tokenizer, p, system) for p in prompts]
    return complete(model, tokenizer, texts, max_new_tokens=max_new_tokens,
                    batch_size=batch_size, device=device)


@torch.no_grad()
def complete(model: Any, tokenizer: Any, texts: Sequence[str], *, max_new_tokens: int = 48,
             batch_size: int = 64, device: str = "cpu") -> list[str]:
    """Greedy continuations of already formatted ``texts`` (e.g. a guard's own template)."""
    encoded = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = tokenizer.eos_token_id
    outputs: list[str] = [""] * len(texts)
    was_training = model.training
    model.eval()
    for start in range(0, len(order), batch_size):
        _fault.reached("generate")
        stopping.check()
        idx = order[start: start + batch_size]
        width = max(len(encoded[i]) for i in idx)
        ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for r, i in enumerate(idx):
            seq = encoded[i]
            ids[r, width - len(seq):] = torch.tensor(seq)
            mask[r, width - len(seq):] = 1
        out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                             max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=pad_id, eos_token_id=tokenizer.eos_token_id)
        for r, i in enumerate(idx):
            outputs[i] = tokenizer.decode(out[r, width:], skip_special_tokens=True).strip()
    if was_training:
        model.train()
    return outputs
