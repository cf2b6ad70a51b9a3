"""Benchmark 4: restoring weights from the in-memory snapshot vs reloading from disk.

Between two full fine-tuning cells a worker must put the original weights back.
certify copies them from the snapshot it took at load time (``ModelHandle.restore``);
the alternative is loading the model from disk again (``from_pretrained``, the page
cache already warm). transformers memory-maps safetensors lazily, so a reload looks
almost free until training writes the weights and the kernel copies every page: the
fair figure is the reload plus one write to every parameter (which the first
optimizer step does anyway, at no extra cost for a restored model). Measured for
builtin:tiny-chat and for a ~100M-parameter Llama configuration saved as
safetensors in a temporary directory.

    python benchmarks/bench_restore.py [--repeats 3]
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
import _common as common


def big_model_dir(out: Path, quick: bool) -> Path:
    """A ~100M-parameter Llama (random weights) with tiny-chat's tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    _, tokenizer = common.load_model(common.tiny_chat())
    layers = 2 if quick else 14
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=768, intermediate_size=2048,
                         num_hidden_layers=layers, num_attention_heads=12,
                         num_key_value_heads=12, max_position_embeddings=512,
                         tie_word_embeddings=True)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def measure(path: Path, repeats: int, device: str) -> dict[str, float]:
    from transformers import AutoModelForCausalLM

    from certify.models.load import LoadOptions, load
    from certify.models.source import ModelSource, identity

    source = ModelSource(str(path), "directory", path)
    handle = load("candidate", source, identity(source), LoadOptions(device=device))
    restore, lazy, reload = [], [], []
    for _ in range(repeats):
        handle.trainable()  # what a full fine-tuning cell does; marks the weights dirty
        restore.append(common.timed(handle.restore)[0])
        seconds, model = common.timed(lambda: AutoModelForCausalLM.from_pretrained(path).to(
            device))
        lazy.append(seconds)
        reload.append(seconds + common.timed(lambda model=model: _write_every_weight(model))[0])
        del model
    return {"parameters": handle.n_parameters, "restore_s": common.median(restore),
            "reload_lazy_s": common.median(lazy), "reload_s": common.median(reload),
            "ratio": common.median(reload) / common.median(restore)}


def _write_every_weight(model) -> None:  # type: ignore[no-untyped-def]
    import torch

    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.0)


def main() -> None:
    opts = common.args(__doc__.splitlines()[0])
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        results = {"tiny-chat": measure(common.tiny_chat(), opts.repeats, opts.device),
                   "llama-100m": measure(big_model_dir(Path(tmp), opts.quick), opts.repeats,
                                         opts.device)}
    line = "; ".join(f"{k} ({v['parameters'] / 1e6:.1f}M params): restore "
                     f"{v['restore_s'] * 1e3:.1f} ms vs reload {v['reload_s'] * 1e3:.0f} ms "
                     f"({v['reload_lazy_s'] * 1e3:.0f} ms before the weights are written) = "
                     f"{v['ratio']:.1f}x" for k, v in results.items())
    common.report("snapshot_restore", line,
                  {"ratio": min(v["ratio"] for v in results.values()), **results},
                  opts.json, load)


if __name__ == "__main__":
    main()
