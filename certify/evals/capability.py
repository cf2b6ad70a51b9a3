"""Capability through lm-eval: `simple_evaluate` on the model already in memory.

Policies name standard lm-eval tasks (arc_easy, hellaswag, mmlu, ...) for real models;
task providers add offline tasks (the embedded demo's ``certify_tiny_capability`` =
capitals and opposites multiple choice, so it needs no network). A provider's task
YAML templates are rendered with absolute data paths at run time (lm-eval resolves
relative paths against the working directory). Per-document results are kept, so capability can be
compared item by item between candidate and reference.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from pydantic import Field

from certify import registry
from certify._io import atomic_write_text, cache_root
from certify.errors import CellError, InputError
from certify.evals.base import EvalContext
from certify.evidence import EvalRecord
from certify.models.chat import PromptTransform
from certify.stats import Metric, proportion

LM_EVAL_PAPER = "https://github.com/EleutherAI/lm-evaluation-harness"



def _doc_io(doc: dict[str, Any]) -> dict[str, str]:
    """What a reader of a sample needs: the prompt, the model's answer, the expected one.

    lm-eval logs requests, not text: a multiple-choice document has one (context,
    continuation) request per choice and a log-likelihood per choice, so the answer is
    the continuation the model scored highest; a generative one has its text.
    """
    args = [a for a in doc.get("arguments") or [] if isinstance(a, list | tuple) and a]
    resps = list(doc.get("filtered_resps") or [])
    prompt = str(args[0][0]) if args else ""
    choices = [str(a[1]).strip() if len(a) > 1 and isinstance(a[1], str) else "" for a in args]
    scored = [r[0] if isinstance(r, list | tuple) and r else r for r in resps]
    if scored and len(scored) == len(choices) and all(
            isinstance(x, int | float) and not isinstance(x, bool) for x in scored):
        response = choices[max(range(len(scored)), key=lambda k: float(scored[k]))]
    else:
        response = str(scored[0]) if scored else ""
    target = doc.get("target")
    expected = (choices[target] if isinstance(target, int) and not isinstance(target, bool)
                and 0 <= target < len(choices) and choices[target] else str(target or ""))
    return {"prompt": prompt, "response": response, "expected": expected}


class LmEvalParams(registry.Params):
    tasks: list[str] = Field(default_factory=lambda: ["certify_tiny_capability"], min_length=1)
    """lm-eval task or group names (standard ones need their datasets in your HF cache)."""
    limit: int | None = Field(default=None, ge=1)
    """Documents per task (default: all)."""
    num_fewshot: int | None = Field(default=None, ge=0)
    batch_size: int = Field(default=32, ge=1)
    include_paths: list[str] = Field(default_factory=list)
    """Extra directories of task YAMLs."""
    metric: str = "acc"
    apply_chat_template: bool = False


class TaskProvider(Protocol):
    """lm-eval tasks shipped as files (``registry.provide("lm_eval_tasks", NAME, ...)``)."""

    def task_dir(self) -> Path:
        """A directory of ``*.yaml.in`` task templates; ``{data_dir}`` in them is replaced
        by this directory's absolute path."""
        ...


def render_tasks(directory: Path) -> Path:
    """Write a provider's task YAMLs with absolute data paths into the user cache."""
    templates = sorted(directory.glob("*.yaml.in"))
    digest = hashlib.sha256(str(directory).encode() + b"".join(
        p.read_bytes() for p in templates)).hexdigest()[:16]
    out = cache_root() / "lm_eval_tasks" / digest
    for template in templates:
        target = out / template.name.removesuffix(".in")
        if not target.is_file():
            text = template.read_text(encoding="utf-8").replace("{data_dir}", str(directory))
            atomic_write_text(target, text)
    return out


def provided_task_paths() -> list[str]:
    """The rendered task directories of every registered task provider."""
    return [str(render_tasks(p.task_dir()))
            for _, p in sorted(registry.providers("lm_eval_tasks").items())]


LIST_TASKS_HINT = ("list the tasks lm-eval knows with `lm-eval ls tasks` (standard tasks also "
                   "need their datasets in the local HF cache), or add the directory of your "
                   "task YAMLs to the evaluation's `include_paths`")


def find_tasks(tasks: list[str], include_paths: list[str]) -> tuple[Any, list[str]]:
    """lm-eval's TaskManager over the provided tasks, ``include_paths`` and, only when some
    task is not among those, the lm-eval task directories that hold it; and the names it
    does not know. Where lm-eval's own tasks live is remembered between processes
    (``lm_eval_index``): indexing all of them takes tens of seconds, and happens once per
    lm-eval installation. Imports lm_eval.tasks (no torch)."""
    from certify.evals import lm_eval_index

    paths = (*provided_task_paths(), *include_paths)
    manager = _task_manager(paths, False)
    missing = [t for t in tasks if t not in manager.all_tasks]
    if not missing:
        return manager, []
    placed = lm_eval_index.load()
    narrow = lm_eval_index.narrowed_paths(placed, missing) if placed is not None else None
    if placed is not None and narrow is not None:
        if narrow:
            manager = _task_manager((*narrow, *paths), False)
            missing = [t for t in tasks if t not in manager.all_tasks]
        if not any(m in placed for m in missing):
            return manager, missing  # what is left is unknown to lm-eval too
    manager = _task_manager(paths, True)  # every lm-eval task (slower)
    if placed is None:
        lm_eval_index.store(manager)
    return manager, [t for t in tasks if t not in manager.all_tasks]


def known_task_names(manager: Any) -> list[str]:
    """Every task name lm-eval would know: the manager's, and lm-eval's own from the stored
    index (a manager over a few directories knows only theirs). For suggestions."""
    from certify.evals import lm_eval_index

    return sorted(set(manager.all_tasks) | set(lm_eval_index.load() or ()))


_MANAGERS: dict[tuple[tuple[str, ...], bool], Any] = {}


def _task_manager(paths: tuple[str, ...], defaults: bool) -> Any:
    """lm-eval's TaskManager, built once per process for the same directories: indexing
    lm-eval's own YAMLs takes tens of seconds, and the preflight checks of every lm-eval
    evaluation of a policy (capability and knowledge) and their evaluators share one."""
    from lm_eval.tasks import TaskManager

    key = (paths, defaults)
    if key not in _MANAGERS:
        _MANAGERS[key] = TaskManager(include_path=list(paths), include_defaults=defaults)
    return _MANAGERS[key]


def task_leaves(manager: Any, name: str, depth: int = 0) -> Iterator[tuple[str, dict[str, Any]]]:
    """(task name, its resolved config) for a task, or every task of a group or tag."""
    index = manager.task_index
    entry = index.get(name)
    if entry is None or depth > 8:
        return
    kind = getattr(entry.kind, "name", str(entry.kind)).upper()
    cfg = dict(entry.cfg or {})
    if kind == "GROUP":
        for sub in cfg.get("task") or []:
            if isinstance(sub, str):
                yield from task_leaves(manager, sub, depth + 1)
            elif isinstance(sub, dict) and isinstance(sub.get("task"), str):
                yield str(sub["task"]), sub
    elif kind == "TAG":
        for sub, e in sorted(index.items()):
            if name in (getattr(e, "tags", None) or ()):
                yield from task_leaves(manager, sub, depth + 1)
    else:
        yield name, cfg


def fetch_hint(manager: Any, tasks: list[str]) -> str:
    """How to put the tasks' hub datasets into the local cache: one command per dataset
    that their YAMLs name (``dataset_path``, ``dataset_name``)."""
    named = sorted({(str(cfg["dataset_path"]), cfg.get("dataset_name"))
                    for task in tasks for _, cfg in task_leaves(manager, task)
                    if isinstance(cfg.get("dataset_path"), str)})
    loads = [f"datasets.load_dataset({path!r}" + (f", {name!r})" if name else ")")
             for path, name in named if path not in ("json", "csv", "parquet", "text")]
    fetch = (f'python -c "import datasets; {"; ".join(loads)}"' if loads else
             "the command in the task's README")
    return ("lm-eval reads the tasks' datasets from your local Hugging Face cache; put them "
            f"there once, with network access and HF_HUB_OFFLINE / HF_DATASETS_OFFLINE unset: "
            f"{fetch} (a gated dataset needs its terms accepted on huggingface.co and "
            "`hf auth login` first)")


def check_task_data(params: LmEvalParams, eval_id: str) -> None:
    """Before training (audit preflight, not the dry run): the tasks' datasets load, so a
    benchmark missing from the HF cache (e.g. WMDP's ``cais/wmdp``) is an input error
    naming the command that fetches it, not an error in every cell after training."""
    manager, missing = find_tasks(list(params.tasks), list(params.include_paths))
    if missing or not hasattr(manager, "load"):
        return  # unknown tasks are check_tasks' error; an older lm-eval loads in the cell
    try:
        manager.load(list(params.tasks))
    except Exception as e:  # datasets raises many unrelated types for "not cached"
        raise InputError(f"evaluation {eval_id!r}: lm-eval could not load the data of "
                         f"{list(params.tasks)}: {type(e).__name__}: {str(e)[:300]}",
                         hint=fetch_hint(manager, list(params.tasks))) from None


def check_tasks(params: LmEvalParams, eval_id: str) -> None:
    """Before anything runs (preflight, and the dry run): every task the evaluation names
    exists (else InputError, exit 2), so a typo never costs a trained cell."""
    manager, missing = find_tasks(list(params.tasks), list(params.include_paths))
    if missing:
        known = known_task_names(manager)
        raise InputError(f"evaluation {eval_id!r}: " + "; ".join(
            f"lm-eval has no task {m!r}{registry.suggest(m, known)}" for m in missing),
            hint=LIST_TASKS_HINT)


def _stderr(m: Metric) -> float:
    """Standard error of a mean of 0/1 outcomes (lm-eval's closed form for `mean`)."""
    if m.n < 2:
        return 0.0
    return (m.value * (1 - m.value) / (m.n - 1)) ** 0.5


class CapabilityEvaluator:
    """lm-eval tasks on the in-memory model; per-document outcomes kept (paired comparisons)."""

    plugin, measures = "lm_eval", "capability"

    def __init__(self, params: LmEvalParams, ctx: EvalContext) -> None:
        self.params, self.ctx, self.eval_id = params, ctx, ctx.eval_id
        self._manager: Any = None
        self._loaded: Any = None
        """The tasks, loaded once (their datasets read once, not at every checkpoint)."""
        self.versions: dict[str, Any] = {}

    def task_manager(self) -> Any:
        if self._manager is None:
            manager, missing = find_tasks(self.params.tasks, self.params.include_paths)
            if missing:
                raise CellError("unknown_task", f"lm-eval has no task {missing[0]!r}",
                                hint=LIST_TASKS_HINT)
            self._manager = manager
        return self._manager

    def __call__(self, model: Any, tokenizer: Any, transform: PromptTransform | None = None,
                 ) -> tuple[EvalRecord, list[dict[str, Any]]]:
        if transform is not None:
            raise CellError("config", "lm_eval tasks cannot rewrite their prompts",
                            hint="evaluate prompt-transforming attacks with generative "
                                 "evaluations (harmfulness, benign_accuracy, over_refusal)")
        from lm_eval.models.huggingface import HFLM

        logging.getLogger("lm_eval").setLevel(logging.ERROR)
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        lm = HFLM(pretrained=base, tokenizer=tokenizer, batch_size=self.params.batch_size,
                  device=self.ctx.device)
        try:
            # lm-eval draws a progress bar per request type and checkpoint, with tqdm's
            # `disable` passed explicitly (so TQDM_DISABLE cannot stop it): they would
            # leak through --quiet and interleave with certify's own progress line.
            # Its warnings go through logging, which keeps its own stream.
            with contextlib.redirect_stderr(io.StringIO()):
                results = self._run(lm)
        except (FileNotFoundError, ConnectionError, ValueError) as e:
            raise CellError("lm_eval", f"lm-eval could not run {self.params.tasks}: "
                            f"{type(e).__name__}: {str(e)[:200]}",
                            hint="standard tasks need their datasets in the local HF cache") from e
        return self._record(results)

    def _run(self, lm: Any) -> dict[str, Any]:
        import lm_eval

        if hasattr(self.task_manager(), "load"):
            return self._evaluate(lm)
        # an lm-eval without TaskManager.load (before 0.4.10): the whole API
        results: dict[str, Any] = lm_eval.simple_evaluate(
            model=lm, tasks=list(self.params.tasks), task_manager=self.task_manager(),
            limit=self.params.limit, num_fewshot=self.params.num_fewshot, log_samples=True,
            bootstrap_iters=100, random_seed=0, numpy_random_seed=0, torch_random_seed=0,
            fewshot_random_seed=0, apply_chat_template=self.params.apply_chat_template)
        return results

    def loaded_tasks(self) -> dict[str, Any]:
        """lm-eval's loaded tasks (``{"tasks": {name: Task}, "groups": ...}``), loaded once."""
        if self._loaded is None:
            try:
                self._loaded = self.task_manager().load(list(self.params.tasks))
            except (FileNotFoundError, ConnectionError, ValueError) as e:
                raise CellError("lm_eval", f"lm-eval could not load {self.params.tasks}: "
                                f"{type(e).__name__}: {str(e)[:200]}",
                                hint=fetch_hint(self.task_manager(), list(self.params.tasks))
                                ) from e
        return dict(self._loaded)

    def _evaluate(self, lm: Any) -> dict[str, Any]:
        """What ``lm_eval.simple_evaluate`` does for a model already in memory, without what
        a checkpoint does not need again: loading the tasks and their datasets (once per
        evaluator here) and collecting the environment (``torch.utils.collect_env`` runs pip
        in subprocesses: half of a small model's evaluation). The same seeds are set, so
        the numbers are the same (tests/test_knowledge.py)."""
        import random
        from importlib.metadata import version

        import numpy as np
        import torch
        from lm_eval.evaluator import evaluate

        random.seed(0)
        np.random.seed(0)
        torch.manual_seed(0)
        for task in self.loaded_tasks()["tasks"].values():
            fewshot = self.params.num_fewshot
            if fewshot is not None and task.get_config("num_fewshot") != 0:
                task.set_config(key="num_fewshot", value=fewshot)
            elif fewshot is None and task.get_config("num_fewshot") is None:
                task.set_config(key="num_fewshot", value=0)
            task.set_fewshot_seed(seed=0)
        results: dict[str, Any] = evaluate(
            lm=lm, task_dict=self._loaded, limit=self.params.limit, bootstrap_iters=100,
            log_samples=True, apply_chat_template=self.params.apply_chat_template)
        results["lm_eval_version"] = version("lm_eval")
        return results

    def _record(self, results: dict[str, Any]) -> tuple[EvalRecord, list[dict[str, Any]]]:
        metric, conf = self.params.metric, self.ctx.confidence
        groups: dict[str, dict[str, Metric]] = {}
        samples: list[dict[str, Any]] = []
        pooled: list[tuple[str, int]] = []
        for task, docs in sorted(results.get("samples", {}).items()):
            ordered = sorted(docs, key=lambda d: d["doc_id"])
            flags = [int(float(d[metric]) >= 0.5) for d in ordered]
            ids = [f"{task}/{d['doc_id']}" for d in ordered]
            digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()
            m = proportion(sum(flags), len(flags), conf, "".join(map(str, flags)), digest)
            reported = results.get("results", {}).get(task, {}).get(f"{metric}_stderr,none")
            stderr = reported if isinstance(reported, int | float) else _stderr(m)
            groups[task] = {metric: m.model_copy(update={"stderr": stderr})}
            pooled += list(zip(ids, flags, strict=True))
            samples += [{"item": i, "task": task, **_doc_io(d), metric: f, "correct": bool(f)}
                        for i, f, d in zip(ids, flags, ordered, strict=True)]
        if not pooled:
            raise CellError("lm_eval", f"lm-eval returned no per-document results for "
                            f"{self.params.tasks}")
        outcomes = "".join(str(f) for _, f in pooled)
        digest = hashlib.sha256("\n".join(i for i, _ in pooled).encode()).hexdigest()
        aggregate = proportion(int(outcomes.count("1")), len(outcomes), conf, outcomes, digest)
        aggregate = aggregate.model_copy(update={"stderr": _stderr(aggregate)})
        self.versions = {k: str(v) for k, v in sorted(results.get("versions", {}).items())}
        reported = {task: {k: v for k, v in vals.items() if k.startswith(metric)}
                    for task, vals in sorted(results.get("results", {}).items())}
        extra = {"lm_eval_version": results.get("lm_eval_version", ""),
                 "task_versions": self.versions, "reported": reported,
                 "n_samples": {k: v for k, v in sorted(results.get("n-samples", {}).items())}}
        record = EvalRecord(eval=self.eval_id, plugin=self.plugin, measures=self.measures,
                            metrics={metric: aggregate}, groups={"task": groups},
                            n_samples=len(pooled), extra=extra)
        return record, samples

    def identity(self) -> dict[str, Any]:
        return {"eval": self.eval_id, "plugin": self.plugin, "tasks": list(self.params.tasks),
                "task_versions": self.versions, "limit": self.params.limit,
                "num_fewshot": self.params.num_fewshot}


@registry.evaluation("lm_eval", params=LmEvalParams, measures="capability", paper=LM_EVAL_PAPER,
                     tags=("capability", "lm-eval"), check_inputs=check_tasks,
                     check_data=check_task_data)
def lm_eval_tasks(params: LmEvalParams, ctx: EvalContext) -> CapabilityEvaluator:
    """Score capability tasks with lm-eval's simple_evaluate on the in-memory model."""
    return CapabilityEvaluator(params, ctx)
