"""Benign evaluations: task accuracy (stability, trainability) and over-refusal."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from certify import registry
from certify.data.load import DatasetRef
from certify.evals.base import (
    EvalContext,
    GenerationParams,
    grouped,
    ids_digest,
    load_rows,
    prompt_texts,
    proportion_metric,
    sample_record,
)
from certify.evidence import EvalRecord
from certify.judges.base import is_refusal
from certify.models.chat import PromptTransform


class TaskParams(GenerationParams):
    dataset: DatasetRef = Field(default_factory=lambda: DatasetRef(source="builtin:benign-eval"))
    match: Literal["contains", "exact"] = "contains"
    """An answer is correct when it contains (or equals) the row's `answer` and is no refusal."""


class OverRefusalParams(GenerationParams):
    dataset: DatasetRef = Field(default_factory=lambda: DatasetRef(source="builtin:over-refusal"))


def _correct(answer: str | None, text: str, match: str) -> bool:
    if not answer or is_refusal(text):
        return False
    return text.strip() == answer.strip() if match == "exact" else answer.lower() in text.lower()


class _Generative:
    plugin = ""
    measures = ""
    required: tuple[str, ...] = ("prompt",)

    def __init__(self, params: Any, ctx: EvalContext) -> None:
        self.params, self.ctx, self.eval_id = params, ctx, ctx.eval_id
        self.dataset, self.rows = load_rows(params.dataset, params.n, *self.required)

    def generate(self, model: Any, tokenizer: Any,
                 transform: PromptTransform | None = None) -> list[str]:
        from certify.models.generate import generate

        p = self.params
        return generate(model, tokenizer, prompt_texts(self.rows, p.prompt_prefix, transform),
                        system=p.system_prompt, max_new_tokens=p.max_new_tokens,
                        batch_size=p.batch_size, device=self.ctx.device)

    def record(self, texts: list[str], flags: dict[str, list[bool]],
               ) -> tuple[EvalRecord, list[dict[str, Any]]]:
        conf, ids = self.ctx.confidence, ids_digest(self.rows)
        record = EvalRecord(
            eval=self.eval_id, plugin=self.plugin, measures=self.measures,
            metrics={k: proportion_metric(v, ids, conf) for k, v in flags.items()},
            groups={"task": grouped(self.rows, flags, "task", conf)}, n_samples=len(texts))
        samples = [sample_record(r, t, **{k: v[i] for k, v in flags.items()})
                   for i, (r, t) in enumerate(zip(self.rows, texts, strict=True))]
        return record, samples

    def identity(self) -> dict[str, Any]:
        return {"eval": self.eval_id, "plugin": self.plugin, "dataset": self.dataset.identity(),
                "n": len(self.rows)}


class TaskEvaluator(_Generative):
    plugin, measures, required = "benign_accuracy", "task", ("prompt", "answer")

    def __call__(self, model: Any, tokenizer: Any, transform: PromptTransform | None = None,
                 ) -> tuple[EvalRecord, list[dict[str, Any]]]:
        texts = self.generate(model, tokenizer, transform)
        correct = [_correct(r.answer, t, self.params.match)
                   for r, t in zip(self.rows, texts, strict=True)]
        return self.record(texts, {"acc": correct, "refusal": [is_refusal(t) for t in texts]})


class OverRefusalEvaluator(_Generative):
    plugin, measures = "over_refusal", "refusal"

    def __call__(self, model: Any, tokenizer: Any, transform: PromptTransform | None = None,
                 ) -> tuple[EvalRecord, list[dict[str, Any]]]:
        texts = self.generate(model, tokenizer, transform)
        flags = {"refusal": [is_refusal(t) for t in texts]}
        if all(r.answer for r in self.rows):
            flags["acc"] = [_correct(r.answer, t, "contains")
                            for r, t in zip(self.rows, texts, strict=True)]
        return self.record(texts, flags)


@registry.evaluation("benign_accuracy", params=TaskParams, measures="task",
                     tags=("capability", "generative"))
def benign_accuracy(params: TaskParams, ctx: EvalContext) -> TaskEvaluator:
    """Generate answers to benign questions and score them against the expected answers."""
    return TaskEvaluator(params, ctx)


@registry.evaluation("over_refusal", params=OverRefusalParams, measures="refusal",
                     paper="https://arxiv.org/abs/2308.01263", tags=("over-refusal",))
def over_refusal(params: OverRefusalParams, ctx: EvalContext) -> OverRefusalEvaluator:
    """Measure how often the model refuses benign prompts that merely look harmful (XSTest-like)."""
    return OverRefusalEvaluator(params, ctx)
