"""Benchmark 5: achieved training FLOP/s vs this machine's measured matmul peak.

The peak is the best of repeated float32 2048x2048 matrix multiplications (2n^3
FLOP each) with the same torch thread count; the physical limit training can reach
here. Achieved is certify's own FLOP estimate for a full fine-tuning step (6 x
parameters x tokens, the figure the evidence records) over the measured time of
certify's training loop, for builtin:tiny-chat (ci-smoke's attack cell) and for a
~100M-parameter Llama configuration on the same data.

    python benchmarks/bench_flops.py [--repeats 3]
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
import _common as common
from bench_restore import big_model_dir


def matmul_peak(repeats: int, device: str, n: int = 2048) -> float:
    import torch

    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    for _ in range(3):
        torch.mm(a, b)
    best = min(common.timed(lambda: torch.mm(a, b))[0] for _ in range(max(5, 3 * repeats)))
    return 2 * n**3 / best


def training_rate(path: Path, steps: int, batch_size: int, device: str) -> dict[str, float]:
    from certify import train

    model, tokenizer = common.load_model(path, device)
    for p in model.parameters():
        p.requires_grad_(True)
    n_params = sum(p.numel() for p in model.parameters())
    encoded = train.encode(tokenizer, common.harm_examples(100), 512)
    optimizer = train.make_optimizer(model.parameters(), "adamw", 1e-4)
    batches = train.batches(encoded, batch_size, 0, tokenizer.pad_token_id)
    train.train(model, batches, optimizer, None, 1, [], lambda s: False,
                device=device)  # warm-up step
    seconds, state = common.timed(lambda: train.train(model, batches, optimizer, None, steps,
                                                      [], lambda s: False, device=device))
    flop = 6 * n_params * state.tokens
    return {"parameters": n_params, "tokens": state.tokens, "seconds": seconds,
            "flop_per_s": flop / seconds}


def main() -> None:
    opts = common.args(__doc__.splitlines()[0])
    load = os.getloadavg()[0]
    import torch

    peak = matmul_peak(opts.repeats, opts.device)
    with tempfile.TemporaryDirectory() as tmp:
        big = big_model_dir(Path(tmp), opts.quick)
        results = {"tiny-chat": training_rate(common.tiny_chat(), 10 if opts.quick else 40, 10,
                                              opts.device),
                   "llama-100m": training_rate(big, 2 if opts.quick else 4, 8, opts.device)}
    for r in results.values():
        r["fraction_of_peak"] = r["flop_per_s"] / peak
    where = "GPU" if opts.device == "cuda" else f"{torch.get_num_threads()} threads"
    line = (f"float32 matmul peak {peak / 1e9:.1f} GFLOP/s ({where}); "
            + "; ".join(f"{k} ({v['parameters'] / 1e6:.1f}M params) {v['flop_per_s'] / 1e9:.2f} "
                        f"GFLOP/s = {100 * v['fraction_of_peak']:.1f}% of peak"
                        for k, v in results.items()))
    common.report("training_flops", line,
                  {"ratio": results["llama-100m"]["fraction_of_peak"], "peak_flop_per_s": peak,
                   **results}, opts.json, load)


if __name__ == "__main__":
    main()
