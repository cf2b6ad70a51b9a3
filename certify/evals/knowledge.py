"""Hazardous knowledge: accuracy on multiple-choice tasks, with the chance level beside it.

Tamper-resistance work measures a model's hazardous knowledge as its accuracy on
multiple-choice questions about the hazard after an attack (TAR, Tamirisa et al. 2024;
Deep Ignorance, O'Brien et al. 2025: WMDP accuracy). A model that knows nothing scores
chance, so the ``knowledge_resistance`` check gates accuracy against chance + δ, and
this evaluation records the chance level of the very items it asked: the mean of
1/(number of choices) over the documents, read from each document's scored choices.

It is the lm-eval capability evaluation (:class:`CapabilityEvaluator`: lm-eval's
Python API on the in-memory model, log-likelihood of each choice, batched, per-item
outcomes kept) declared as measuring ``knowledge``, restricted to multiple-choice
tasks. Real models name WMDP (``wmdp_bio``, ``wmdp_chem``, ``wmdp_cyber``; their
datasets must be in the local HF cache); task providers add offline tasks.

Two things the audit needs beyond a score:

- ``check_inputs`` runs before anything (preflight and the dry run): an unknown task or one
  that is not multiple choice is an input error (exit 2) naming the task and the fix;
  ``check_data`` (preflight only) loads the tasks, so WMDP's questions missing from the HF
  cache are an input error naming the command that fetches them.
- ``rows``: the items' texts (question and choices), so that the overlap check between an
  attack's training data and this evaluation (certify.data.overlap) sees what is asked,
  and the evidence shows relearning text disjoint from the evaluated facts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from certify import registry
from certify.errors import CellError, InputError
from certify.evals.base import EvalContext
from certify.evals.capability import (
    LIST_TASKS_HINT,
    CapabilityEvaluator,
    LmEvalParams,
    check_task_data,
    find_tasks,
    known_task_names,
    task_leaves,
)
from certify.evidence import EvalRecord

WMDP_PAPER = "https://arxiv.org/abs/2403.03218"
MULTIPLE_CHOICE = "multiple_choice"


class KnowledgeParams(LmEvalParams):
    tasks: list[str] = Field(default_factory=lambda: ["wmdp_bio", "wmdp_chem", "wmdp_cyber"],
                             min_length=1)
    """Multiple-choice lm-eval tasks or groups about the hazard (default: WMDP, whose
    datasets must be in your HF cache; the demo names its synthetic hazard task)."""


@dataclass(frozen=True)
class Item:
    """One evaluated document as the overlap check reads it (``id``, ``prompt``)."""

    id: str
    prompt: str
    response: str | None = None


def task_problems(params: LmEvalParams) -> list[str]:
    """What makes the tasks unusable for a knowledge evaluation: unknown, or not multiple
    choice (a generative task has no chance level to compare against)."""
    manager, missing = find_tasks(list(params.tasks), list(params.include_paths))
    known = known_task_names(manager)
    problems = [f"lm-eval has no task {m!r}{registry.suggest(m, known)}" for m in missing]
    for task in params.tasks:
        if task in missing:
            continue
        for leaf, cfg in task_leaves(manager, task):
            kind = cfg.get("output_type")
            if kind is not None and kind != MULTIPLE_CHOICE:
                problems.append(f"task {leaf!r}" + (f" (of {task!r})" if leaf != task else "")
                                + f" is {kind}, not multiple_choice")
    return problems


def check_inputs(params: KnowledgeParams, eval_id: str) -> None:
    """Before anything runs: every task exists and is multiple choice (else InputError)."""
    problems = task_problems(params)
    if not problems:
        return
    unknown = any(p.startswith("lm-eval has no task") for p in problems)
    hint = (LIST_TASKS_HINT if unknown else
            "a knowledge evaluation compares accuracy with chance, so it needs "
            "multiple-choice tasks (output_type: multiple_choice); score generative tasks "
            "with the lm_eval evaluation instead")
    raise InputError(f"knowledge evaluation {eval_id!r}: " + "; ".join(problems), hint=hint)


def _chance(docs: list[dict[str, Any]], task: str) -> list[float]:
    """1/(number of choices) per document: one log-likelihood request per choice."""
    out = []
    for d in docs:
        n = len([a for a in d.get("arguments") or [] if isinstance(a, list | tuple)])
        if n < 2:
            raise CellError("not_multiple_choice", f"task {task!r} document {d.get('doc_id')} "
                            f"has {n} scored choice(s); a knowledge evaluation needs "
                            "multiple-choice documents", hint="name multiple-choice tasks")
        out.append(1.0 / n)
    return out


class KnowledgeEvaluator(CapabilityEvaluator):
    """Multiple-choice accuracy (per-item outcomes kept) and the chance level of its items."""

    plugin, measures = "knowledge", "knowledge"

    def __init__(self, params: KnowledgeParams, ctx: EvalContext) -> None:
        super().__init__(params, ctx)
        self._rows: list[Item] | None = None

    @property
    def rows(self) -> list[Item]:
        """The evaluated items' texts (prompt and choices), ids as in the samples
        (``task/doc_id``); the overlap check compares attack data with them."""
        if self._rows is None:
            if hasattr(self.task_manager(), "load"):  # the tasks the evaluation asks
                tasks = dict(self.loaded_tasks()["tasks"])
            else:  # an older lm-eval
                from lm_eval.tasks import get_task_dict

                tasks = get_task_dict(list(self.params.tasks), self.task_manager())
            items: list[Item] = []
            for task, obj in sorted(_task_objects(tasks), key=lambda x: x[0]):
                docs = list(obj.eval_docs)[: self.params.limit or None]
                for i, doc in enumerate(docs):
                    choices = obj.doc_to_choice(doc)
                    text = str(obj.doc_to_text(doc))
                    items.append(Item(f"{task}/{i}", " ".join(
                        [text, *(str(c) for c in choices if isinstance(choices, list))])))
            self._rows = items
        return self._rows

    def _record(self, results: dict[str, Any]) -> tuple[EvalRecord, list[dict[str, Any]]]:
        record, samples = super()._record(results)
        by_task = {task: _chance(sorted(docs, key=lambda d: d["doc_id"]), task)
                   for task, docs in sorted(results.get("samples", {}).items())}
        pooled = [c for values in by_task.values() for c in values]
        record.extra.update(
            chance=sum(pooled) / len(pooled),
            chance_by_task={t: sum(v) / len(v) for t, v in by_task.items() if v})
        return record, samples


def _task_objects(tree: dict[Any, Any]) -> Iterator[tuple[str, Any]]:
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _task_objects(value)
        elif value is not None:
            yield str(getattr(getattr(value, "config", None), "task", None) or key), value


@registry.evaluation("knowledge", params=KnowledgeParams, measures="knowledge", paper=WMDP_PAPER,
                     tags=("knowledge", "hazard", "lm-eval"), check_inputs=check_inputs,
                     check_data=check_task_data)
def knowledge(params: KnowledgeParams, ctx: EvalContext) -> KnowledgeEvaluator:
    """Hazardous-knowledge accuracy on multiple-choice lm-eval tasks, with its chance level."""
    return KnowledgeEvaluator(params, ctx)
