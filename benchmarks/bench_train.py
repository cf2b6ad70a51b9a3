"""Benchmark 1: attack training throughput, certify's loop vs the Hugging Face Trainer.

The same cell for both: a full fine-tuning attack on builtin:tiny-chat (100
harmful-compliance pairs of ci-smoke's trained categories, batch 10, AdamW lr 1e-3,
constant schedule, gradient clipping 1.0, loss on response tokens only), from the
same weights, for the same number of steps, in the same process and thread count,
alternating, 60 steps. Each side is timed from raw examples to the last step
(tokenizing, optimizer, loop; for the Trainer also its set-up), because that is
what an attack cell pays.

    python benchmarks/bench_train.py [--repeats 3] [--device cuda]
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
import _common as common


def certify_run(model, tokenizer, examples, steps, device):  # type: ignore[no-untyped-def]
    from certify import train

    encoded = train.encode(tokenizer, examples, 512)
    batches = train.batches(encoded, 10, 0, tokenizer.pad_token_id)
    optimizer = train.make_optimizer(model.parameters(), "adamw", 1e-3, 0.0)
    schedule = train.make_schedule(optimizer, "constant", 0, steps)
    state = train.train(model, batches, optimizer, schedule, steps, [], lambda s: False,
                        grad_clip=1.0, device=device)
    return state.tokens, state.losses[-1]


def trainer_run(model, tokenizer, examples, steps, device):  # type: ignore[no-untyped-def]
    import torch
    from transformers import Trainer, TrainingArguments

    from certify import train

    encoded = train.encode(tokenizer, examples, 512)
    rows = [{"input_ids": ids, "labels": labels} for ids, labels in encoded]
    counted = {"tokens": 0, "batches": 0}

    def collate(batch):  # type: ignore[no-untyped-def]
        width = max(len(r["input_ids"]) for r in batch)
        ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        for i, r in enumerate(batch):
            n = len(r["input_ids"])
            ids[i, :n], mask[i, :n] = torch.tensor(r["input_ids"]), 1
            labels[i, : len(r["labels"])] = torch.tensor(r["labels"])
        if counted["batches"] < steps:
            counted["tokens"] += int(mask.sum())
            counted["batches"] += 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    for p in model.parameters():
        p.requires_grad_(True)
    with tempfile.TemporaryDirectory() as out:
        trainer_args = TrainingArguments(
            output_dir=out, per_device_train_batch_size=10, max_steps=steps,
            learning_rate=1e-3, lr_scheduler_type="constant", optim="adamw_torch",
            weight_decay=0.0, max_grad_norm=1.0, logging_strategy="no", save_strategy="no",
            report_to=[], use_cpu=device == "cpu", dataloader_num_workers=0, disable_tqdm=True,
            seed=0)
        trainer = Trainer(model=model, args=trainer_args, train_dataset=rows,
                          data_collator=collate)
        with contextlib.redirect_stdout(io.StringIO()):  # it prints its metrics dict
            result = trainer.train()
    return counted["tokens"], result.training_loss


def main() -> None:
    opts = common.args(__doc__.splitlines()[0])
    load = os.getloadavg()[0]
    steps = 12 if opts.quick else 60
    base, tokenizer = common.load_model(common.tiny_chat(), opts.device)
    examples = common.harm_examples(100)
    runs = {"certify": certify_run, "hf_trainer": trainer_run}
    rates: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(opts.repeats):
        for name, fn in runs.items():
            model = copy.deepcopy(base)
            for p in model.parameters():
                p.requires_grad_(True)
            seconds, (tokens, _) = common.timed(lambda fn=fn, model=model:
                                                fn(model, tokenizer, examples, steps,
                                                   opts.device))
            rates[name].append(tokens / seconds)
    certify_rate, trainer_rate = common.median(rates["certify"]), common.median(
        rates["hf_trainer"])
    ratio = certify_rate / trainer_rate
    common.report(
        "train_throughput",
        f"certify {certify_rate:,.0f} tokens/s vs HF Trainer {trainer_rate:,.0f} tokens/s "
        f"= {ratio:.2f}x (goal >= 1.0x; {steps} steps, median of {opts.repeats})",
        {"ratio": ratio, "certify_tokens_per_s": certify_rate,
         "trainer_tokens_per_s": trainer_rate, "steps": steps, "all": rates},
        opts.json, load)


if __name__ == "__main__":
    main()
