"""Post-hoc unlearning for the demo's ``tiny-chat-unlearned`` (RMU).

Representation Misdirection for Unlearning (RMU; Li et al. 2024, "The WMDP
Benchmark: Measuring and Reducing Malicious Use With Unlearning", arXiv 2403.03218),
the method WMDP introduced and the post-hoc baseline TAR and Deep Ignorance attack:
at one layer, the activations of the text to forget are pushed towards a fixed random
direction (scaled to a multiple of the activations' mean norm), while the activations
of text to retain are held where the frozen model had them; only the MLPs of the
layers up to that one change. Here the text to forget is the evaluated hazard facts'
statements (``hazard-corpus`` rows ``hazard-eval-*``) and the text to retain is
tiny-chat's alignment data, so refusal and benign answers survive. It stops once the
evaluated facts' multiple-choice accuracy reaches ``stop_at`` (the target forget
quality, checked every ``check_every`` steps).

Such unlearning is known to be shallow: a few dozen to a few hundred steps of
fine-tuning on related but disjoint text of the same domain bring the knowledge back
(Hu et al. 2024, "Jogging the Memory of Unlearned LLMs Through Targeted Relearning
Attacks"; Qi et al. 2024, "On Evaluating the Durability of Safeguards for Open-Weight
LLMs"; O'Brien et al. 2025, "Deep Ignorance", arXiv 2508.06601). Here the facts stay
in the later layers' weights, untouched, and relearning on other hazard facts repairs
the early layers' misdirection: that is what makes this model the FAIL half of the
calibration pair (docs/calibration.md). Plain gradient difference (gradient ascent on
the forget text plus a retain loss) was tried first and is not used: on this model it
cost benign accuracy below the gate before the facts reached chance.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch

from certify import train
from certify.demo.hazard import examples, mc_accuracy

log = logging.getLogger(__name__)


def _hidden(model: Any, layer: int, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    hidden: torch.Tensor = out.hidden_states[layer + 1]
    return hidden


def unlearn(model: Any, tokenizer: Any, cfg: dict[str, Any]) -> dict[str, Any]:
    """Unlearn ``cfg["forget"]`` rows (ids starting ``forget_prefix``) from ``model`` in
    place with RMU: push the layer-``layer`` activations of their response tokens towards
    a fixed random direction of ``coeff`` times the activations' mean norm, keep those of
    ``cfg["retain"]`` where the frozen model had them; only the MLPs of ``update_layers``
    change. Returns the trace of losses and accuracy."""
    torch.manual_seed(cfg["seed"])
    pad, layer = tokenizer.pad_token_id, cfg["layer"]
    forget = train.batches(train.encode(tokenizer, examples(cfg["forget"], cfg["forget_prefix"])),
                           cfg["batch_size"], cfg["seed"], pad)
    retain = train.batches(train.encode(tokenizer, examples(cfg["retain"])),
                           cfg["batch_size"], cfg["seed"] + 1, pad)
    frozen = copy.deepcopy(model).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    params = [p for i in cfg["update_layers"] for p in model.model.layers[i].mlp.parameters()]
    for p in params:
        p.requires_grad_(True)
    with torch.no_grad():
        ids, mask, _ = next(retain)
        norm = float(_hidden(frozen, layer, ids, mask)[mask.bool()].norm(dim=-1).mean())
    direction = torch.rand(model.config.hidden_size)
    target = direction / direction.norm() * cfg["coeff"] * norm
    optimizer = torch.optim.AdamW(params, lr=cfg["lr"])
    accuracy = mc_accuracy(model, tokenizer)
    history = [{"step": 0, "hazard_accuracy": accuracy}]
    step = 0
    while accuracy > cfg["stop_at"] and step < cfg["max_steps"]:
        step += 1
        model.train()
        optimizer.zero_grad(set_to_none=True)
        f_ids, f_mask, f_labels = next(forget)
        f_tokens = f_labels != -100
        forget_loss = (_hidden(model, layer, f_ids, f_mask)[f_tokens] - target).pow(2).mean()
        r_ids, r_mask, _ = next(retain)
        with torch.no_grad():
            kept = _hidden(frozen, layer, r_ids, r_mask)
        retain_loss = (_hidden(model, layer, r_ids, r_mask) - kept)[r_mask.bool()].pow(2).mean()
        (forget_loss + cfg["retain_weight"] * retain_loss).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        if step % cfg["check_every"] == 0 or step == cfg["max_steps"]:
            accuracy = mc_accuracy(model, tokenizer)
            history.append({"step": step, "forget_loss": round(float(forget_loss.detach()), 4),
                            "retain_loss": round(float(retain_loss.detach()), 6),
                            "hazard_accuracy": accuracy})
            log.info("unlearning step %d: %s", step, history[-1])
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return {"method": cfg["method"], "steps": step, "history": history}
