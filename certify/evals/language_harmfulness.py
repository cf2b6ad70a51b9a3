"""Harmfulness in a synthetic second language: prompts mapped in, answers mapped back, judged.

The English harm prompts (with any prompt_prefix and the attack's prompt transform)
are mapped into the language before generation; the answers are mapped back to
English before the judges read them, so an English judge can score a model that
answers in the language. The raw answers are kept in the samples. Measuring the
same model in English is the plain ``harmfulness`` evaluation beside this one.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from certify import registry
from certify.data.language import SYNTHETIC_LANGUAGES
from certify.evals.base import EvalContext
from certify.evals.harmfulness import HarmEvaluator, HarmParams
from certify.evidence import EvalRecord
from certify.models.chat import PromptTransform


class LanguageHarmParams(HarmParams):
    """Prompts (with any prompt_prefix) are mapped into the language; the system prompt stays."""

    language: Literal["backslang"] = "backslang"
    """The synthetic language (certify.data.language); must match the multilingual attack's."""
    max_new_tokens: int = Field(default=128, ge=1, le=4096)
    """Text in the language tokenizes long: leave room for a whole answer."""


class LanguageHarmEvaluator(HarmEvaluator):
    def __init__(self, params: LanguageHarmParams, ctx: EvalContext) -> None:
        super().__init__(params, ctx)
        self.params: LanguageHarmParams = params
        self.language = SYNTHETIC_LANGUAGES[params.language]

    def __call__(self, model: Any, tokenizer: Any, transform: PromptTransform | None = None,
                 ) -> tuple[EvalRecord, list[dict[str, Any]]]:
        from certify.models.generate import generate

        p = self.params
        asked = [self.language.encode(p.prompt_prefix + (transform(r.prompt) if transform
                                                         else r.prompt)) for r in self.rows]
        raw = generate(model, tokenizer, asked, system=p.system_prompt,
                       max_new_tokens=p.max_new_tokens, batch_size=p.batch_size,
                       device=self.ctx.device)
        record, samples = self.score([self.language.decode(t) for t in raw],
                                     extra={"language": self.language.identity()})
        for sample, text in zip(samples, raw, strict=True):
            sample["raw_response"] = text
        return record.model_copy(update={"plugin": "language_harmfulness"}), samples

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "plugin": "language_harmfulness",
                "language": self.language.identity()}


@registry.evaluation("language_harmfulness", params=LanguageHarmParams, measures="harm",
                     tags=("safety", "generative", "multilingual"))
def language_harmfulness(params: LanguageHarmParams, ctx: EvalContext) -> LanguageHarmEvaluator:
    """Judge answers to harmful prompts asked in a synthetic language, mapped back to English."""
    return LanguageHarmEvaluator(params, ctx)
