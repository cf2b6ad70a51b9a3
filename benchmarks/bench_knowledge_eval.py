"""Benchmark 8: one checkpoint's knowledge evaluation vs the harmfulness evaluation.

Issue 12, item 8. The knowledge evaluation scores multiple choice by log-likelihood
through lm-eval (one batched forward pass per choice, nothing generated); the
harmfulness evaluation generates an answer per prompt (greedy, ci-smoke's 64 new
tokens) and judges it. Both run as a cell runs them, through the registered
evaluators, on the same model and the same number of items (the knowledge task's
documents; as many prompts of builtin:harm-eval, balanced across categories): on
builtin:tiny-chat as built (it refuses, so answers end early) and after 64 steps of
the full fine-tuning attack (it complies, so answers run towards the token limit).
Alternating, median of the repeats. The ratio is harmfulness seconds / knowledge
seconds per checkpoint: above 1, the knowledge evaluation is cheaper.

``--model llama-100m`` measures the same on a ~100M-parameter Llama with random weights
and tiny-chat's tokenizer (benchmarks/bench_restore.py's), whose answers always run to
the token limit: on the 1M-parameter demo model both evaluations are mostly fixed
per-call overhead, at 100M they are mostly arithmetic.

    python benchmarks/bench_knowledge_eval.py [--repeats 3] [--task certify_tiny_capability]
        [--model tiny-chat|llama-100m] [--device cuda]
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
import _common as common
from bench_generate import attacked
from bench_restore import big_model_dir


def main() -> None:
    import argparse

    from certify import registry
    from certify.evals.base import EvalContext

    own = {"--task": "certify_tiny_capability", "--model": "tiny-chat"}
    for flag in own:  # the shared parser knows the common options only
        if flag in sys.argv:
            i = sys.argv.index(flag)
            own[flag] = sys.argv[i + 1]
            del sys.argv[i:i + 2]
    task, which = own["--task"], own["--model"]
    opts: argparse.Namespace = common.args(__doc__.splitlines()[0])
    load = os.getloadavg()[0]
    tmp = tempfile.TemporaryDirectory()
    path = (common.tiny_chat() if which == "tiny-chat" else
            big_model_dir(Path(tmp.name), opts.quick))
    model, tokenizer = common.load_model(path, opts.device)
    ctx = EvalContext("bench", device=opts.device)
    spec = registry.get("eval", "knowledge")
    knowledge = spec.fn(spec.params.model_validate({"tasks": [task]}), ctx)
    items = len(knowledge.rows)
    spec = registry.get("eval", "harmfulness")
    harm = spec.fn(spec.params.model_validate(
        {"judges": ["canary"], "n": items, "max_new_tokens": 64}), ctx)
    models = ({"aligned": model, "attacked": attacked(model, tokenizer,
                                                      8 if opts.quick else 64, opts.device)}
              if which == "tiny-chat" else {"random weights": model})
    results: dict[str, dict[str, float]] = {}
    for label, m in models.items():
        m.eval()
        times: dict[str, list[float]] = {"knowledge": [], "harm": []}
        for _ in range(opts.repeats):
            for name, evaluator in (("knowledge", knowledge), ("harm", harm)):
                seconds, _ = common.timed(lambda e=evaluator, m=m: e(m, tokenizer))
                times[name].append(seconds)
        k, h = common.median(times["knowledge"]), common.median(times["harm"])
        results[label] = {"knowledge_s": k, "harm_s": h, "ratio": h / k}
    worst = min(results, key=lambda key: results[key]["ratio"])
    line = "; ".join(f"{label}: {r['ratio']:.1f}x ({r['harm_s']:.2f}s harmfulness, "
                     f"{items} prompts x 64 new tokens, vs {r['knowledge_s']:.2f}s knowledge, "
                     f"{items} items of {task})" for label, r in results.items())
    line = f"{which} on {opts.device}: {line}"
    summary = {"ratio": results[worst]["ratio"], "items": items, "task": task, "model": which,
               **results}
    common.report("knowledge_eval", f"harmfulness / knowledge seconds per checkpoint: {line} "
                  "(expect several times)", summary, opts.json, load)
    tmp.cleanup()


if __name__ == "__main__":
    main()
