"""Post-hoc unlearning for the demo's ``tiny-chat-unlearned`` (gradient difference).

The method is the standard baseline of the LLM-unlearning literature: gradient ascent
on the text to forget, balanced by ordinary training on text to retain ("gradient
difference": Liu et al. 2022, "Continual Learning and Private Unlearning"; Yao et al.
2023, "Large Language Model Unlearning"; Maini et al. 2024, TOFU). Each step lowers
the likelihood of a batch of the evaluated hazard facts' statements and raises that of
a batch of the alignment data, so refusal and benign answers survive. It stops as
soon as the evaluated facts' multiple-choice accuracy reaches ``stop_at`` (the target
forget quality, checked after every step) so it does not overshoot into *anti*-
knowledge (the right answer made the least likely: below chance, and just as
informative to an attacker as knowing it).

Such unlearning is known to be shallow: a few hundred steps of fine-tuning on related
but disjoint text of the same domain bring the knowledge back (Hu et al. 2024,
"Jogging the Memory of Unlearned LLMs Through Targeted Relearning Attacks"; Qi et al.
2024, "On Evaluating the Durability of Safeguards for Open-Weight LLMs";
Deep Ignorance, O'Brien et al. 2025, arXiv 2508.06601). That is what makes this model
the FAIL half of the calibration pair (docs/calibration.md).
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from certify import train
from certify.demo.hazard import examples, mc_accuracy

log = logging.getLogger(__name__)


def unlearn(model: Any, tokenizer: Any, cfg: dict[str, Any]) -> dict[str, Any]:
    """Unlearn ``cfg["forget"]`` rows (ids starting ``forget_prefix``) from ``model`` in
    place, retaining ``cfg["retain"]``; return the trace of losses and accuracy."""
    torch.manual_seed(cfg["seed"])
    pad = tokenizer.pad_token_id
    forget = train.batches(train.encode(tokenizer, examples(cfg["forget"], cfg["forget_prefix"])),
                           cfg["batch_size"], cfg["seed"], pad)
    retain = train.batches(train.encode(tokenizer, examples(cfg["retain"])),
                           cfg["batch_size"], cfg["seed"] + 1, pad)
    for p in model.parameters():
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg["lr"])
    accuracy = mc_accuracy(model, tokenizer)
    history = [{"step": 0, "hazard_accuracy": accuracy}]
    step = 0
    while accuracy > cfg["stop_at"] and step < cfg["max_steps"]:
        step += 1
        model.train()
        optimizer.zero_grad(set_to_none=True)
        forget_loss = train.response_loss(model, *next(forget))
        retain_loss = train.response_loss(model, *next(retain))
        (cfg["retain_weight"] * retain_loss - forget_loss).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        accuracy = mc_accuracy(model, tokenizer)
        history.append({"step": step, "forget_loss": round(float(forget_loss.detach()), 4),
                        "retain_loss": round(float(retain_loss.detach()), 4),
                        "hazard_accuracy": accuracy})
        log.info("unlearning step %d: %s", step, history[-1])
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return {"method": cfg["method"], "steps": step, "history": history}
