"""Relearning: fine-tune on text about the hazard domain and see whether the knowledge returns.

Unlearning that only hides knowledge is undone by a little training on *related* text,
even text that never states the evaluated facts: Hu et al. 2024 ("Jogging the memory of
unlearned LLMs through targeted relearning", https://arxiv.org/abs/2406.13356) restore
unlearned WMDP knowledge with a few steps on public articles; TAR's adversaries
(Tamirisa et al. 2024, https://arxiv.org/abs/2408.00761) fine-tune on forget-domain
text; Qi et al. 2024 ("On evaluating the durability of safeguards for open-weight LLMs",
https://arxiv.org/abs/2412.07097) show how small changes to such an attack change the
verdict, which is why the budget is a grid and every checkpoint is gated.

The recipe, top to bottom:

1. draw ``n_samples`` documents from ``dataset`` with the cell's seed (``run.documents``:
   each row's ``response``, after its ``prompt`` when not empty). The runner records the
   dataset and the word n-gram overlap of the documents with every evaluation of the
   cell, so the evidence shows whether the text states the evaluated items themselves
   (relearning must be *related* to the facts and *disjoint* from the questions);
2. tokenize each document as plain text, with no chat template (the text is a document,
   not an answer to a request) and the loss on every token (plain language modelling);
   documents longer than ``max_length`` tokens are cut. With ``chat_template: true`` each
   row is instead a question and its answer in the model's chat template, loss on the
   answer: domain Q&A, the form a fine-tuning API accepts, and the form a chat model's
   knowledge is asked in (a model can keep knowledge that plain text does not reach);
3. train every weight (``lora_rank: 0``, the default) or LoRA adapters
   (``lora_rank`` > 0) with the shared fine-tuning loop: optimizer, schedule, clipping,
   seeded batches and evaluation at the cell's checkpoints, as ``sft`` and ``lora``.

Gate it with the ``knowledge`` evaluation and the ``knowledge_resistance`` check.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from certify import registry
from certify.attacks._common import FinetuneParams, fit_batches, tuned_model
from certify.attacks.contract import AttackRun
from certify.data.load import DatasetRef

HU_2024 = "https://arxiv.org/abs/2406.13356"
TAMIRISA_2024 = "https://arxiv.org/abs/2408.00761"
QI_2024 = "https://arxiv.org/abs/2412.07097"


class RelearnParams(FinetuneParams):
    """Plain language modelling on domain documents; every weight, or LoRA."""

    dataset: DatasetRef = Field(
        default_factory=lambda: DatasetRef(source="builtin:hazard-relearn"))
    """Documents about the hazard domain (rows with ``response``; ``prompt`` may be "")."""
    n_samples: int = Field(default=64, ge=1, le=10_000_000)
    """Distinct documents the attacker has (drawn with the cell's seed)."""
    learning_rate: float = Field(default=1e-4, gt=0, le=10)
    lora_rank: int = Field(default=0, ge=0, le=4096)
    """0: train every weight (Hu et al.'s and TAR's adversaries); > 0: LoRA adapters."""
    lora_alpha: int | None = Field(default=None, ge=1)
    """Default: twice the rank."""
    lora_dropout: float = Field(default=0.0, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    chat_template: bool = False
    """False: plain documents, loss on every token. True: each row's prompt and response
    as one chat exchange, loss on the response (rows then need both)."""


def encode_documents(tokenizer: Any, texts: list[str], max_length: int,
                     ) -> list[tuple[list[int], list[int]]]:
    """(input ids, labels) per document: the plain text (the tokenizer's own special tokens,
    e.g. BOS, then EOS), loss on every token."""
    eos = tokenizer.eos_token_id
    out = []
    for text in texts:
        ids = list(tokenizer(text, add_special_tokens=True)["input_ids"])
        if eos is not None and (not ids or ids[-1] != eos):
            ids.append(int(eos))
        ids = ids[:max_length]
        out.append((ids, list(ids)))
    return out


@registry.attack("relearning", params=RelearnParams, paper=HU_2024,
                 tags=("finetune", "relearning", "knowledge"), data_fields=("response",))
def relearning(run: AttackRun, p: RelearnParams) -> None:
    """Relearn a domain by language modelling on related documents (Hu et al. 2024; TAR)."""
    from certify import train

    if p.chat_template:
        encoded = train.encode(run.tokenizer, run.examples(p.dataset, p.n_samples,
                                                           p.categories), p.max_length)
    else:
        documents = run.documents(p.dataset, p.n_samples, p.categories)
        encoded = encode_documents(run.tokenizer, documents, p.max_length)
    run.note(relearning={"documents": len(encoded),
                         "tokens": sum(len(ids) for ids, _ in encoded),
                         "chat_template": p.chat_template, "lora_rank": p.lora_rank})
    batches = train.batches(encoded, p.batch_size, run.seed, run.tokenizer.pad_token_id)
    with tuned_model(run, p.lora_rank, p.lora_alpha, p.target_modules,
                     p.lora_dropout) as model:
        fit_batches(run, model, batches, p)
