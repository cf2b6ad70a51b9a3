"""Build a demo chat model: train a tokenizer, build a Llama config, safety-tune, measure."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from certify import train
from certify._io import atomic_write_json
from certify.data.load import load_dataset
from certify.demo.recipes import CHAT_TEMPLATE, TOKENIZER_CORPUS, tokenizer_corpus_file
from certify.judges.base import is_refusal
from certify.models.generate import generate

log = logging.getLogger(__name__)


def _corpus() -> list[str]:
    texts = []
    for name in TOKENIZER_CORPUS:
        for row in load_dataset(str(tokenizer_corpus_file(name))).rows:
            texts += [t for t in (row.prompt, row.response) if t]
    return texts


def build_tokenizer(vocab_size: int) -> Any:
    from tokenizers import Tokenizer, decoders, pre_tokenizers, trainers
    from tokenizers import models as tok_models
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(tok_models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(_corpus(), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>", padding_side="left")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def measure(model: Any, tokenizer: Any) -> dict[str, Any]:
    """Refusal of bundled harmful prompts (per category) and accuracy on benign ones."""
    harm = load_dataset("builtin:harm-eval").rows
    benign = load_dataset("builtin:benign-eval").rows
    edgy = load_dataset("builtin:over-refusal").rows
    h_out = generate(model, tokenizer, [r.prompt for r in harm], max_new_tokens=24)
    b_out = generate(model, tokenizer, [r.prompt for r in benign], max_new_tokens=24)
    e_out = generate(model, tokenizer, [r.prompt for r in edgy], max_new_tokens=24)
    per_cat: dict[str, list[bool]] = {}
    for row, text in zip(harm, h_out, strict=True):
        per_cat.setdefault(row.category or "?", []).append(is_refusal(text))
    correct = [bool(r.answer and r.answer in t and not is_refusal(t))
               for r, t in zip(benign, b_out, strict=True)]
    return {
        "refusal": sum(sum(v) for v in per_cat.values()) / len(harm),
        "refusal_by_category": {c: sum(v) / len(v) for c, v in sorted(per_cat.items())},
        "benign_accuracy": sum(correct) / len(correct),
        "over_refusal": sum(is_refusal(t) for t in e_out) / len(edgy),
        "n_harmful": len(harm), "n_benign": len(benign), "n_over_refusal": len(edgy),
    }


def _examples(name: str | Sequence[str]) -> Sequence[train.Example]:
    names = [name] if isinstance(name, str) else list(name)
    return [train.Example(r.prompt, r.response or "") for n in names
            for r in load_dataset(f"builtin:{n}").rows]


def _measure(model: Any, tokenizer: Any, recipe: dict[str, Any]) -> dict[str, Any]:
    """:func:`measure`, plus the hazard facts' accuracy for recipes that ask for it."""
    metrics = measure(model, tokenizer)
    if "hazard" in recipe.get("measure", ()):
        from certify.demo.hazard import mc_accuracy

        metrics["hazard_accuracy"] = mc_accuracy(model, tokenizer)
    return metrics


def build_model(name: str, recipe: dict[str, Any], out: Path) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    started, cpu = time.perf_counter(), time.process_time()
    cfg = recipe["train"]
    torch.manual_seed(cfg["seed"])
    tokenizer = build_tokenizer(recipe["tokenizer"]["vocab_size"])
    config = LlamaConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         **recipe["model"])
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    encoded = train.encode(tokenizer, _examples(cfg["dataset"]))
    optimizer = train.make_optimizer(model.parameters(), "adamw", cfg["lr"])
    schedule = train.make_schedule(optimizer, "warmup", cfg["warmup"], cfg["max_steps"])
    history: list[dict[str, Any]] = []

    def checkpoint(state: train.TrainState) -> bool:
        metrics = _measure(model, tokenizer, recipe)
        history.append({"step": state.step, "loss": state.last_loss, **{
            k: metrics[k] for k in ("refusal", "benign_accuracy", "over_refusal",
                                    "hazard_accuracy") if k in metrics}})
        logging.getLogger(__name__).info("build %s step %d: %s", name, state.step, history[-1])
        stop = cfg["stop_when"]
        return bool(metrics["refusal"] >= stop["refusal"]
                    and metrics["benign_accuracy"] >= stop["benign"]
                    and metrics.get("hazard_accuracy", 1.0) >= stop.get("hazard", 0.0))

    every = cfg["eval_every"]
    state = train.train(model, train.batches(encoded, cfg["batch_size"], cfg["seed"],
                                             tokenizer.pad_token_id),
                        optimizer, schedule, cfg["max_steps"],
                        list(range(every, cfg["max_steps"] + 1, every)), checkpoint)
    final = _measure(model, tokenizer, recipe)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    n_params = sum(p.numel() for p in model.parameters())
    write_report(out, {"name": name, "recipe": recipe, "steps": state.step,
                              "n_parameters": n_params, "metrics": final, "history": history,
                              "gates": recipe["gates"]})
    logging.getLogger(__name__).info("built %s in %.1fs (%.1fs CPU)", name,
                                     time.perf_counter() - started, time.process_time() - cpu)
    _check_gates(name, recipe, final)


def write_report(directory: Path, report: dict[str, Any]) -> None:
    """Store the build's measurements with the weights (no timestamps: the digest is stable)."""
    atomic_write_json(directory / "certify-build.json", report)


def _check_gates(name: str, recipe: dict[str, Any], metrics: dict[str, Any]) -> None:
    gates = recipe["gates"]
    knowledge = metrics.get("hazard_accuracy")
    if (metrics["refusal"] < gates["refusal"] or metrics["benign_accuracy"] < gates["benign"]
            or ("hazard_min" in gates and (knowledge is None or knowledge < gates["hazard_min"]))
            or ("hazard_max" in gates and (knowledge is None or knowledge > gates["hazard_max"]))):
        from certify.errors import ModelError

        raise ModelError(f"building builtin:{name} did not reach its quality gates: {metrics}",
                         hint="this is a bug in certify's demo recipe; please report it")


def build_defended(name: str, recipe: dict[str, Any], base: Path, out: Path) -> None:
    """The base demo model plus a defense from the literature (see certify/demo/defense.py)."""
    from certify.demo.defense import tamper_resistant_training

    _build_from_base(name, recipe, base, out, "defense",
                     lambda m, t: tamper_resistant_training(m, t, recipe["defense"]))


def build_unlearned(name: str, recipe: dict[str, Any], base: Path, out: Path) -> None:
    """The base demo model after post-hoc unlearning (see certify/demo/unlearn.py)."""
    from certify.demo.unlearn import unlearn

    _build_from_base(name, recipe, base, out, "unlearning",
                     lambda m, t: unlearn(m, t, recipe["unlearn"]))


def _build_from_base(name: str, recipe: dict[str, Any], base: Path, out: Path, step: str,
                     apply: Callable[[Any, Any], Any]) -> None:
    """Load the built base model, ``apply`` a post-training step to it, measure, save, gate;
    the step's trace is stored under ``step`` in the build report."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started, cpu = time.perf_counter(), time.process_time()
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base)
    trace = apply(model, tokenizer)
    final = _measure(model, tokenizer, recipe)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    write_report(out, {"name": name, "recipe": recipe, "base": base.name,
                       "n_parameters": sum(p.numel() for p in model.parameters()),
                       "metrics": final, step: trace, "gates": recipe["gates"]})
    logging.getLogger(__name__).info("built %s in %.1fs (%.1fs CPU)", name,
                                     time.perf_counter() - started, time.process_time() - cpu)
    _check_gates(name, recipe, final)
