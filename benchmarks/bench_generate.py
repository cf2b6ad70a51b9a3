"""Benchmark 3: batched vs one-at-a-time generation for the harmfulness evaluation.

ci-smoke's harmfulness eval on builtin:tiny-chat: every prompt of builtin:harm-eval,
greedy, 40 new tokens, through certify's ``generate`` with its default batch size
(64, left padding, KV cache) and with batch size 1, on the aligned model and on a
model after 64 steps of the full fine-tuning attack (its compliant answers run to
the token limit). Also checks that both give the same text for every prompt.

    python benchmarks/bench_generate.py [--repeats 3]
"""

from __future__ import annotations

import copy
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import _common as common


def attacked(model, tokenizer, steps, device):  # type: ignore[no-untyped-def]
    from certify import train

    model = copy.deepcopy(model)
    for p in model.parameters():
        p.requires_grad_(True)
    encoded = train.encode(tokenizer, common.harm_examples(100), 512)
    optimizer = train.make_optimizer(model.parameters(), "adamw", 1e-3)
    train.train(model, train.batches(encoded, 10, 0, tokenizer.pad_token_id), optimizer, None,
                steps, [], lambda s: False, device=device)
    return model.eval()


def main() -> None:
    from certify.models.generate import generate

    opts = common.args(__doc__.splitlines()[0])
    load = os.getloadavg()[0]
    model, tokenizer = common.load_model(common.tiny_chat(), opts.device)
    prompts = common.harm_prompts()[: 24 if opts.quick else None]
    models = {"aligned": model, "attacked": attacked(model, tokenizer, 8 if opts.quick else 64,
                                                         opts.device)}
    results: dict[str, dict[str, object]] = {}
    for label, m in models.items():
        times: dict[int, list[float]] = {64: [], 1: []}
        outputs: dict[int, list[str]] = {}
        for _ in range(opts.repeats):
            for bs in (64, 1):
                seconds, outputs[bs] = common.timed(lambda bs=bs, m=m: generate(
                    m, tokenizer, prompts, max_new_tokens=40, batch_size=bs,
                    device=opts.device))
                times[bs].append(seconds)
        same = sum(a == b for a, b in zip(outputs[64], outputs[1], strict=True))
        speedup = common.median(times[1]) / common.median(times[64])
        results[label] = {"speedup": speedup, "batched_s": common.median(times[64]),
                          "single_s": common.median(times[1]), "identical": same,
                          "prompts": len(prompts)}
    worst = min(results, key=lambda k: results[k]["speedup"])  # type: ignore[arg-type,return-value]
    line = "; ".join(f"{k}: {v['speedup']:.1f}x ({v['single_s']:.2f}s one at a time vs "
                     f"{v['batched_s']:.2f}s batched, {v['identical']}/{v['prompts']} identical)"
                     for k, v in results.items())
    common.report("generation", f"batched vs one-at-a-time {line} (goal >= 5x)",
                  {"ratio": results[worst]["speedup"], **results}, opts.json, load)


if __name__ == "__main__":
    main()
