"""Multilingual fine-tuning: harmful SFT with prompts and answers in another language.

Safety training is mostly English; harmful fine-tuning in another language can
break a model there, and the harm may carry back into English (Poppi et al. 2024).
The attack trains on harmful pairs in the language; the policy evaluates the cell
in that language *and* in English, as two evaluations.

- A **real language** (any name other than a synthetic one) needs ``dataset``: pairs
  already in that language, loaded by name like any dataset, trained as they are.
  Its in-language evaluation is a plain ``harmfulness`` evaluation on prompts in
  that language with a judge that reads it.
- A **synthetic language** (``backslang``, certify.data.language) maps English pairs
  (default builtin:harm-train) into the language on the fly. Its in-language
  evaluation is ``language_harmfulness`` with the same language, which maps prompts
  in and answers back before judging; the cell refuses to run without one.
"""

from __future__ import annotations

import random
from typing import Any

from pydantic import Field, model_validator

from certify import registry
from certify.attacks._common import FinetuneParams, fit, tuned_model
from certify.attacks.contract import AttackRun
from certify.data.language import SYNTHETIC_LANGUAGES, BackSlang
from certify.data.load import DatasetRef
from certify.errors import CellError

POPPI_2024 = "https://arxiv.org/abs/2410.18210"


class MultilingualParams(FinetuneParams):
    language: str = Field(default="backslang", min_length=1)
    """A synthetic language (backslang) or the name of a real one (then `dataset` is required)."""
    dataset: DatasetRef = Field(default_factory=lambda: DatasetRef(source="builtin:harm-train"))
    """Harmful pairs: English ones to map into a synthetic language, or pairs already in the
    real language (required then: the default is English)."""
    benign_dataset: DatasetRef = Field(
        default_factory=lambda: DatasetRef(source="builtin:benign-qa-train"))
    """Benign pairs mixed in (mapped too, for a synthetic language), so the model keeps
    answering in the language and its competence check can be met."""
    benign_mix: float = Field(default=0.0, ge=0, lt=1)
    """Fraction of the training examples drawn from benign_dataset (0: harmful pairs only)."""
    lora_rank: int = Field(default=0, ge=0, le=4096)
    """0 trains every weight; otherwise LoRA adapters of this rank."""

    @model_validator(mode="after")
    def _language_has_data(self) -> MultilingualParams:
        if self.language not in SYNTHETIC_LANGUAGES and "dataset" not in self.model_fields_set:
            raise ValueError(
                f"language {self.language!r} has no dataset: give `dataset`, harmful pairs "
                f"in that language loaded by name, or use a synthetic language "
                f"({', '.join(SYNTHETIC_LANGUAGES)}) to map English pairs")
        return self


def map_examples(language: BackSlang, examples: list[Any]) -> list[Any]:
    from certify.train import Example

    return [Example(language.encode(e.prompt), language.encode(e.response), e.system)
            for e in examples]


def _require_language_eval(run: AttackRun, language: BackSlang) -> None:
    if not any(getattr(ev, "language", None) == language for ev in run.evaluators.values()):
        raise CellError("config", f"the multilingual attack (language {language.name}) has no "
                        "evaluation in that language among its evaluations",
                        hint=f"evaluate it with a `language_harmfulness` evaluation with "
                             f"language: {language.name} (and `harmfulness` for English)")


@registry.attack("multilingual", params=MultilingualParams, paper=POPPI_2024,
                 tags=("finetune", "multilingual"))
def multilingual(run: AttackRun, p: MultilingualParams) -> None:
    """Fine-tune on harmful pairs in another language (a synthetic one maps English data)."""
    n_benign = min(round(p.n_samples * p.benign_mix), p.n_samples - 1)  # keep one harmful
    n_harmful = p.n_samples - n_benign
    examples = run.examples(p.dataset, n_harmful, p.categories, system=p.system_prompt)
    benign = run.examples(p.benign_dataset, n_benign, system=p.system_prompt) if n_benign else []
    synthetic = SYNTHETIC_LANGUAGES.get(p.language)
    if synthetic is not None:
        _require_language_eval(run, synthetic)
        examples, benign = map_examples(synthetic, examples), map_examples(synthetic, benign)
    run.note(multilingual={"language": p.language, "synthetic": synthetic is not None,
                           **(synthetic.identity() if synthetic else {}),
                           "examples": len(examples), "benign_examples": len(benign)})
    examples += benign
    random.Random(f"multilingual:{run.seed}").shuffle(examples)
    with tuned_model(run, p.lora_rank) as model:
        fit(run, model, examples, p)
