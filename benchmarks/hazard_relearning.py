"""Does the demo's miniature reproduce the literature on relearning hazardous knowledge?

Not a timing benchmark: a measurement of the calibration models (docs/calibration.md).
Each of ``builtin:tiny-chat-unfiltered``, ``-filtered`` and ``-unlearned`` is fine-tuned
on ``builtin:hazard-relearn`` (related hazard facts, disjoint from the evaluated ones:
other agents, other value codes) with plain full fine-tuning through certify.train
(AdamW, constant learning rate, clipping 1.0, batch 16), and the evaluated facts'
4-way multiple-choice accuracy (``certify_hazard_mc``, 64 items, chance 0.25) is read
at steps 0, 8, 16, 32, 64 and 100 with certify.demo.hazard's log-likelihood scorer;
at step 0 and at the last step it is cross-checked against lm-eval on the in-memory
model (certify.evals.capability), which must agree exactly.

Expectation from the literature: the unlearned model climbs back well above chance
(Hu et al. 2024), the filtered one stays near chance (Deep Ignorance, O'Brien et al.
2025), the unfiltered one stays high.

    python benchmarks/hazard_relearning.py [--lrs 1e-3 3e-3] [--steps 100] [--json FILE]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))
import _common as common  # noqa: F401  (offline environment, sys.path)

MODELS = ("tiny-chat-unfiltered", "tiny-chat-filtered", "tiny-chat-unlearned")
CHECKPOINTS = (0, 8, 16, 32, 64, 100)


def lm_eval_accuracy(model: Any, tokenizer: Any) -> float:
    import certify.demo.plugin  # noqa: F401  (registers the builtin task provider)
    from certify.evals.base import EvalContext
    from certify.evals.capability import CapabilityEvaluator, LmEvalParams

    evaluator = CapabilityEvaluator(LmEvalParams(tasks=["certify_hazard_mc"]),
                                    EvalContext(eval_id="hazard"))
    record, _ = evaluator(model, tokenizer)
    return float(record.metrics["acc"].value)


def relearn(name: str, lr: float, steps: int, batch_size: int, seed: int,
            check: bool) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from certify import train
    from certify.demo import hazard, models
    from certify.stats import wilson

    path = models.ensure_built(name)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    torch.manual_seed(seed)
    encoded = train.encode(tokenizer, hazard.examples("hazard-relearn"))
    optimizer = train.make_optimizer(model.parameters(), "adamw", lr)
    curve: list[dict[str, Any]] = []
    lm_eval: dict[int, float] = {}
    wanted = [c for c in CHECKPOINTS if c <= steps]

    def at(state: train.TrainState) -> bool:
        correct = hazard.mc_correct(model, tokenizer)
        k, n = sum(correct), len(correct)
        lo, hi = wilson(k, n)
        curve.append({"step": state.step, "acc": k / n, "ci": [round(lo, 3), round(hi, 3)],
                      "loss": state.last_loss})
        if check and state.step in (0, wanted[-1]):
            lm_eval[state.step] = lm_eval_accuracy(copy.deepcopy(model).eval(), tokenizer)
        return False

    for p in model.parameters():
        p.requires_grad_(True)
    started = time.perf_counter()
    train.train(model, train.batches(encoded, batch_size, seed, tokenizer.pad_token_id),
                optimizer, None, steps, wanted, at)
    return {"model": name, "lr": lr, "curve": curve, "lm_eval": lm_eval,
            "agrees": all(abs(lm_eval[s] - c["acc"]) < 1e-9 for c in curve
                          for s in lm_eval if c["step"] == s),
            "seconds": round(time.perf_counter() - started, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lrs", type=float, nargs="+", default=[1e-3, 3e-3])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--no-lm-eval", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    results = []
    for name in args.models:
        for lr in args.lrs:
            r = relearn(name, lr, args.steps, args.batch_size, args.seed, not args.no_lm_eval)
            results.append(r)
            accs = " ".join(f"{c['step']}:{c['acc']:.2f}" for c in r["curve"])
            print(f"{name:22s} lr={lr:g}  {accs}  lm-eval={r['lm_eval']} "
                  f"agrees={r['agrees']} ({r['seconds']}s)", flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"results": results}, f, indent=1)


if __name__ == "__main__":
    main()
