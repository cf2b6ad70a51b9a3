"""Tamper-resistant training for the demo's defended model (first-order TAR / MLAC).

The defense simulates the attacker during training (Henderson et al. 2023, "Self-
Destructing Models", MLAC; Tamirisa et al. 2024, "Tamper-Resistant Safeguards for
Open-Weight LLMs", TAR): each outer step copies the model, runs a few steps of a
harmful fine-tuning attack on the copy with a randomly drawn learning rate and
length, measures how well the attacked copy still refuses, and pushes the original
weights in the direction that keeps the attacked copy refusing (first-order meta-
gradient: the gradient at the attacked weights, applied to the original). A retain
loss on the alignment data keeps benign capability. It is cheap enough for a CPU on
a 1M-parameter model and is *not* a claim of robustness beyond the adversaries it
simulated (Qi et al. 2024 show such defenses break under changed attack settings).
"""

from __future__ import annotations

import copy
import logging
import random
from typing import Any

import torch

from certify import train
from certify.data.load import load_dataset

log = logging.getLogger(__name__)


def _examples(name: str, categories: list[str] | None = None) -> list[train.Example]:
    return [train.Example(r.prompt, r.response or "") for r in load_dataset(f"builtin:{name}").rows
            if categories is None or r.category in categories]


def tamper_resistant_training(model: Any, tokenizer: Any, cfg: dict[str, Any]) -> dict[str, Any]:
    """Train ``model`` in place against simulated attacks; return the loss history."""
    rng = random.Random(cfg["seed"])
    torch.manual_seed(cfg["seed"])
    pad = tokenizer.pad_token_id
    cats = cfg["harm_categories"]
    retain = train.batches(train.encode(tokenizer, _examples("align-train")),
                           cfg["batch_size"], cfg["seed"], pad)
    attack = train.batches(train.encode(tokenizer, _examples("harm-train", cats)),
                           cfg["inner_batch_size"], cfg["seed"] + 1, pad)
    refuse = train.batches(train.encode(tokenizer, _examples("harm-refusals", cats)),
                           cfg["batch_size"], cfg["seed"] + 2, pad)
    adversary = copy.deepcopy(model)
    for p in list(model.parameters()) + list(adversary.parameters()):
        p.requires_grad_(True)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg["lr"])
    history = []
    for step in range(cfg["steps"]):
        optimizer.zero_grad(set_to_none=False)
        retain_loss = train.response_loss(model, *next(retain))
        retain_loss.backward()
        # Simulated attack on a copy: a random learning rate and length from the range.
        adversary.load_state_dict(model.state_dict())
        adversary.train()
        inner = torch.optim.AdamW(adversary.parameters(), lr=rng.choice(cfg["inner_lr"]))
        for _ in range(rng.choice(cfg["inner_steps"])):
            inner.zero_grad()
            train.response_loss(adversary, *next(attack)).backward()
            inner.step()
        inner.zero_grad()
        tamper_loss = train.response_loss(adversary, *next(refuse))
        tamper_loss.backward()
        with torch.no_grad():
            for p, a in zip(model.parameters(), adversary.parameters(), strict=True):
                p.grad.add_(cfg["lambda"] * a.grad)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % 25 == 0 or step == cfg["steps"] - 1:
            history.append({"step": step, "retain_loss": round(float(retain_loss.detach()), 4),
                            "refusal_loss_after_attack": round(float(tamper_loss.detach()), 4)})
            log.info("defense step %d: %s", step, history[-1])
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return {"history": history}
