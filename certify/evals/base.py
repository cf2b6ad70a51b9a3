"""The evaluator protocol and helpers shared by the eval plug-ins. Torch-free."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import Field

from certify import registry
from certify.data.load import Dataset, DatasetRef, Row, load_dataset
from certify.evidence import EvalRecord
from certify.models.chat import PromptTransform
from certify.stats import Metric, proportion


@dataclass
class EvalContext:
    """What an evaluator is built with: its policy id and the run's settings."""

    eval_id: str
    device: str = "cpu"
    confidence: float = 0.95


class Evaluator(Protocol):
    eval_id: str

    def __call__(self, model: Any, tokenizer: Any, transform: PromptTransform | None = None,
                 ) -> tuple[EvalRecord, list[dict[str, Any]]]:
        """Evaluate the model; ``transform`` (set by an attack through the attack contract)
        rewrites each prompt before generation. The cell runner passes it only when set."""
        ...

    def identity(self) -> dict[str, Any]: ...


class GenerationParams(registry.Params):
    """Generation settings shared by generative evaluations (greedy decoding)."""

    n: int | None = Field(default=None, ge=1)
    """Use at most n prompts, balanced across categories/tasks; default: all."""
    system_prompt: str | None = None
    prompt_prefix: str = ""
    """Text prepended to every prompt (e.g. an identity-shift trigger)."""
    max_new_tokens: int = Field(default=48, ge=1, le=4096)
    batch_size: int = Field(default=64, ge=1, le=4096)


def balanced(rows: Sequence[Row], n: int | None, key: str = "category") -> list[Row]:
    """Up to n rows taken round-robin across groups (by id order): deterministic and balanced."""
    if n is None or n >= len(rows):
        return sorted(rows, key=lambda r: r.id)
    groups: dict[str, list[Row]] = {}
    for row in sorted(rows, key=lambda r: r.id):
        groups.setdefault(getattr(row, key) or row.task or "", []).append(row)
    out: list[Row] = []
    while len(out) < n:
        for g in sorted(groups):
            if groups[g] and len(out) < n:
                out.append(groups[g].pop(0))
    return sorted(out, key=lambda r: r.id)


def ids_digest(rows: Sequence[Row]) -> str:
    return hashlib.sha256("\n".join(r.id for r in rows).encode()).hexdigest()


def proportion_metric(flags: Sequence[bool], ids_sha: str, confidence: float,
                      paired: bool = True) -> Metric:
    """A proportion with its Wilson interval; ``paired`` keeps per-item outcomes."""
    if not paired:
        return proportion(sum(flags), len(flags), confidence)
    return proportion(sum(flags), len(flags), confidence,
                      outcomes="".join("1" if f else "0" for f in flags), ids_sha256=ids_sha)


def grouped(rows: Sequence[Row], flags: dict[str, list[bool]], key: str,
            confidence: float, paired: bool = True) -> dict[str, dict[str, Metric]]:
    """Per-group proportions for each named flag vector (rows and flags aligned).

    ``paired`` keeps the per-item outcomes so groups can be compared item by item
    (stability per task); harm breakdowns do not need them.
    """
    groups: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        name = getattr(row, key)
        if name:
            groups.setdefault(name, []).append(i)
    out: dict[str, dict[str, Metric]] = {}
    for name, idx in sorted(groups.items()):
        sub_ids = ids_digest([rows[i] for i in idx])
        out[name] = {}
        for metric, vec in flags.items():
            m = proportion_metric([vec[i] for i in idx], sub_ids, confidence)
            out[name][metric] = m if paired else m.model_copy(
                update={"outcomes": None, "ids_sha256": None})
    return out


def prompt_texts(rows: Sequence[Row], prefix: str = "",
                 transform: PromptTransform | None = None) -> list[str]:
    """The prompts as generated: ``prefix`` + the row's prompt (rewritten by ``transform``)."""
    return [prefix + (transform(r.prompt) if transform is not None else r.prompt)
            for r in rows]


def load_rows(ref: DatasetRef, n: int | None, *fields: str) -> tuple[Dataset, list[Row]]:
    dataset = load_dataset(ref)
    dataset.require(*fields)
    return dataset, balanced(dataset.rows, n)


def sample_record(row: Row, response: str, **extra: Any) -> dict[str, Any]:
    return {"item": row.id, "prompt": row.prompt, "response": response,
            "category": row.category, "task": row.task, **extra}
