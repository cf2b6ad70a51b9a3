"""Run one cell: restore the model, seed, call the attack recipe, evaluate at checkpoints.

:class:`CellRun` is the runner side of the attack contract
(``certify.attacks.contract.AttackRun``): it hands the recipe its examples and models,
trains with the cell's checkpoints (``checkpoint`` evaluates the model, records the
numbers, and asks ``certify.assess.early_stop`` whether the outcome is already decided),
evaluates models handed back without training, and runs a search's sub-trials. The
recipe never sets anything on it. Failures become an ``error`` record with the reason;
they never become "broken" or "safe".
"""

from __future__ import annotations

import logging
import random
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from certify import registry
from certify._io import utc_now
from certify.assess.early_stop import decided
from certify.assess.trajectory import Point, rate
from certify.attacks.contract import Adapters, AttackRun, Batch, Spend, Trial
from certify.data.load import DatasetRef, Row, load_dataset
from certify.data.overlap import overlap_by_eval
from certify.environment import hostname_hash
from certify.errors import CellError, DataError
from certify.evals.base import Evaluator
from certify.evidence import CellRecord, CheckpointRecord, EarlyStop, ErrorInfo
from certify.models.chat import PromptTransform, template_description
from certify.plan import CellSpec
from certify.policy.schema import Policy
from certify.run.cell_state import CellKeeper, KeepState
from certify.run.progress import CheckpointNote, checkpoint_note
from certify.stats import Metric

if TYPE_CHECKING:
    from certify.models.load import ModelHandle
    from certify.train import Example, Optim, TrainState

log = logging.getLogger(__name__)

FULL_FLOP_PER_TOKEN = 6
"""Forward + backward through every weight, per trained token and parameter."""
FROZEN_FLOP_PER_TOKEN = 4
"""Forward + activation gradients through frozen weights (LoRA, soft prompts)."""


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass(frozen=True)
class _Outcome:
    """What a cell (or one sub-trial of it) produced."""

    records: list[CheckpointRecord]
    samples: list[dict[str, Any]]
    early_stop: EarlyStop | None
    n_trainable: int


class CellRun:
    """The context an attack recipe runs in (implements AttackRun)."""

    def __init__(self, spec: CellSpec, handle: ModelHandle, evaluators: dict[str, Evaluator],
                 policy: Policy, autocast_dtype: Any = None, gang: Any = None,
                 on_checkpoint: Callable[[CheckpointNote], None] | None = None,
                 keep: KeepState | None = None, baseline: CellRecord | None = None) -> None:
        self.spec, self.handle, self.policy, self.gang = spec, handle, policy, gang
        self.baseline = baseline
        """The finished baseline cell of this cell's role, when the worker has it: what
        early stopping compares a capability bound with (``assess.early_stop``)."""
        self.on_checkpoint = on_checkpoint
        """Told of every evaluated checkpoint (the driver's ``checkpoint`` event)."""
        self._keep_state = keep  # where training keeps its state (sharded too: cell_state)
        self._train_calls = 0
        self._in_trial = False
        self._started = time.perf_counter()
        self._evaluators = evaluators
        self.autocast_dtype = autocast_dtype
        self.train_categories: list[str] | None = None
        """The harm categories the attacker trained on (all ``examples`` calls)."""
        # How prompts were formatted: the tokenizer's chat template, or the plain fallback.
        self.notes: dict[str, Any] = {"chat_template": template_description(handle.tokenizer)}
        self.eval_seconds = 0.0
        self.used_evals: set[str] = set()
        self._flop_per_token = FULL_FLOP_PER_TOKEN
        self._n_trainable = 0
        self._transforms: dict[str, PromptTransform] = {}
        self._records: list[CheckpointRecord] = []
        self._samples: list[dict[str, Any]] = []
        self._early_stop: EarlyStop | None = None

    # -- the attack contract -------------------------------------------------------------

    @property
    def seed(self) -> int:
        return self.spec.seed

    @property
    def checkpoints(self) -> list[int]:
        return self.spec.checkpoints

    @property
    def confidence(self) -> float:
        return self.policy.statistics.confidence

    @property
    def tokenizer(self) -> Any:
        return self.handle.tokenizer

    @property
    def device(self) -> str:
        return self.handle.device

    @property
    def measures(self) -> dict[str, str]:
        return {e: str(registry.get("eval", self.policy.evaluations[e].eval).extra
                       .get("measures", "")) for e in self.spec.evaluate}

    @property
    def evaluators(self) -> Mapping[str, object]:
        return dict(self._evaluators)

    def examples(self, ref: DatasetRef, n: int | None, categories: list[str] | None = None,
                 system: str | None = None) -> list[Example]:
        """``n`` distinct (prompt, response) examples drawn with the cell's seed."""
        from certify.train import Example

        chosen = self._draw(ref, n, categories, ("prompt", "response"))
        return [Example(r.prompt, r.response or "", system) for r in chosen]

    def documents(self, ref: DatasetRef, n: int | None,
                  categories: list[str] | None = None) -> list[str]:
        """``n`` distinct documents (prompt, when not empty, then response)."""
        chosen = self._draw(ref, n, categories, ("response",))
        return ["\n\n".join(t for t in (r.prompt, r.response) if t) for r in chosen]

    def _draw(self, ref: DatasetRef, n: int | None, categories: list[str] | None,
              fields: tuple[str, ...]) -> list[Row]:
        """Rows drawn with the cell's seed; recorded with their overlap with the evaluations."""
        dataset = load_dataset(ref)
        dataset.require(*fields)
        rows = [r for r in dataset.rows if categories is None or r.category in categories]
        if n is not None and n > len(rows):
            raise CellError("not_enough_data", f"dataset {dataset.name} has {len(rows)} usable "
                            f"rows but the attack asks for n_samples={n}",
                            hint="lower n_samples or give a larger dataset")
        chosen = random.Random(f"{self.seed}:{dataset.sha256}").sample(rows, n or len(rows))
        # The harm categories the attacker actually trained on (all calls of this cell):
        # generalization holds out the evaluated categories that are not among them.
        used = sorted({r.category for r in chosen if r.category})
        if used:
            self.train_categories = sorted(set(self.train_categories or []) | set(used))
        self.notes.setdefault("train_data", []).append(
            {**dataset.identity(), "categories_used": used, "n_used": len(chosen),
             "overlap": overlap_by_eval(chosen, self._evaluators)})
        return chosen

    def trainable_model(self, local: bool = False) -> Any:
        """The model, all weights trainable (restored from the snapshot after the cell).

        With ``--fsdp`` it is a sharded copy trained by every process of the gang; the
        handle's model receives its weights at each checkpoint and is what is evaluated.
        ``local``: this process's model even then (a weight edit that trains nothing).
        """
        if self.gang is None or local:
            model = self.handle.trainable()
        else:
            self.handle.dirty = True  # gathered weights land in the handle's model
            model = self.gang.shard(self.handle)
            self.note(fsdp={"processes": self.gang.world, "backend": self.gang.group.backend})
        self._n_trainable = sum(p.numel() for p in self.handle.model.parameters())
        self._flop_per_token = FULL_FLOP_PER_TOKEN
        return model

    @contextmanager
    def adapters(self, spec: Adapters) -> Iterator[Any]:
        """Fresh LoRA adapters on the frozen model, unloaded afterwards."""
        import torch
        from peft import LoraConfig, get_peft_model

        torch.manual_seed(self.seed)  # LoRA initialisation draws from the global RNG
        config = LoraConfig(r=spec.rank, lora_alpha=spec.alpha or 2 * spec.rank,
                            lora_dropout=spec.dropout, target_modules=spec.target_modules,
                            task_type="CAUSAL_LM")
        with warnings.catch_warnings():
            # peft reads transformers' deprecated ``is_gradient_checkpointing`` alias while
            # wrapping; the FutureWarning is theirs to fix and tells a user nothing.
            warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated",
                                    FutureWarning)
            model = get_peft_model(self.frozen_model(), config)
        self._n_trainable = sum(t.numel() for t in model.parameters() if t.requires_grad)
        try:
            yield model
        finally:
            model.unload()

    def frozen_model(self) -> Any:
        """The model with frozen weights, for adapter methods that leave them untouched."""
        self._flop_per_token = FROZEN_FLOP_PER_TOKEN
        return self.handle.model

    def train(self, model: Any, batches: Iterator[Batch], optim: Optim, batch_size: int,
              checkpoints: Sequence[int] | None = None) -> TrainState:
        """Train ``model`` on global batches to optim.max_steps, evaluating at ``checkpoints``."""
        from certify import train

        optimizer, schedule = optim.build(model.parameters())
        if not self._n_trainable:  # something trained through frozen weights (a soft prompt)
            self._n_trainable = sum(t.numel() for t in model.parameters() if t.requires_grad)
        args = (optimizer, schedule, optim.max_steps,
                self.checkpoints if checkpoints is None else checkpoints,
                lambda state: self.checkpoint(state, model))
        kwargs = {"device": self.device, "grad_clip": optim.grad_clip,
                  "autocast_dtype": self.autocast_dtype}
        self._train_calls += 1
        sharded = self.gang is not None and model is self.gang.model
        keep = self._keep_state
        keeper = (None if keep is None or self._in_trial else
                  CellKeeper(self, keep.path, self._train_calls, keep.save,
                             self.gang if sharded else None))
        if not sharded:  # this process alone (LoRA with --fsdp too)
            return train.train(model, batches, *args, keeper=keeper, **kwargs)
        with self.gang.fitting(optim, self.autocast_dtype, batch_size,
                               self.handle.model) as relay:
            return train.train(model, relay(batches), *args, group=self.gang.group,
                               keeper=keeper, **kwargs)

    def hand_back(self, model: Any, spend: Spend, step: int | None = None) -> bool:
        """Evaluate a model made without training at ``step`` (default: the final
        checkpoint), charged ``spend``; True when the checks are decided (stop)."""
        from certify.train import TrainState

        at = self.spec.max_steps if step is None else step
        if at not in self.spec.checkpoints and at != self.spec.max_steps:
            raise CellError("internal", f"hand_back at step {at}, which is not one of the "
                            f"cell's checkpoints {self.spec.checkpoints}",
                            hint="a recipe hands back at run.checkpoints only")
        state = TrainState(step=at, samples=spend.samples, tokens=spend.tokens,
                           seconds=spend.seconds)
        return self.checkpoint(state, model, flop=spend.flop)

    def transform_prompts(self, transform: PromptTransform,
                          evals: Sequence[str] | None = None) -> None:
        chosen = list(self._evaluators) if evals is None else list(evals)
        unknown = [e for e in chosen if e not in self._evaluators]
        if unknown:
            raise CellError("config", f"prompt transform for unknown evaluation(s) "
                            f"{', '.join(unknown)} (the cell runs {', '.join(self._evaluators)})")
        self._transforms.update(dict.fromkeys(chosen, transform))
        self.note(prompt_transform={**self.notes.get("prompt_transform", {}),
                                    **{e: transform.identity() for e in chosen}})

    def note(self, **values: Any) -> None:
        """Attack-specific disclosures that go into the evidence (e.g. cipher competence)."""
        self.notes.update(values)

    def trial(self, body: Callable[[AttackRun], TrainState | None]) -> Trial:
        """Run ``body`` from the unmodified model and the cell's seed; record it apart.
        Prompt transforms set inside ``body`` end with the trial."""
        self.handle.restore()
        seed_everything(self.seed)
        self._records, self._samples, self._early_stop = [], [], None
        transforms = dict(self._transforms)  # a transform set inside the trial is its own
        self._in_trial = True  # a sub-trial keeps no state: it is not the cell's training
        try:
            state = body(self)
        finally:
            self._transforms, self._in_trial = transforms, False
        outcome = _Outcome(self._records, self._samples, self._early_stop, self._n_trainable)
        rates: dict[str, list[tuple[int, float]]] = {}
        metrics: dict[str, list[tuple[int, dict[str, Metric]]]] = {}
        for cp in outcome.records:
            for eval_id, record in cp.evals.items():
                rates.setdefault(eval_id, []).append((cp.step, rate(record).value))
                metrics.setdefault(eval_id, []).append((cp.step, dict(record.metrics)))
        return Trial(rates, [cp.step for cp in outcome.records],
                     state.last_loss if state is not None else None, outcome.early_stop,
                     outcome, metrics)

    def keep(self, trial: Trial) -> None:
        outcome = cast(_Outcome, trial.outcome)
        self._records, self._samples = outcome.records, outcome.samples
        self._early_stop, self._n_trainable = outcome.early_stop, outcome.n_trainable

    def study_path(self) -> Path | None:
        return None if self._keep_state is None else self._keep_state.study

    # -- what the training loop calls ----------------------------------------------------

    def checkpoint(self, state: Any, model: Any = None, flop: float | None = None) -> bool:
        """Evaluate at this step, record it, and return True when the cell should stop.
        ``flop``: what the attacker spent (default: training FLOP of ``state.tokens``)."""
        stop = self._checkpoint(state, model, flop)
        self._tell(state)
        return stop

    def _checkpoint(self, state: Any, model: Any, flop: float | None = None) -> bool:
        model = model if model is not None else self.handle.model
        if self.gang is not None and model is self.gang.model:
            if state.step > 0:
                self.gang.gather_into(self.handle.model)
            model = self.handle.model
        final = state.step >= self.spec.max_steps
        if flop is None:
            flop = float(self._flop_per_token * self.handle.n_parameters * state.tokens)
        record = self._evaluate(state, model, self.spec.evaluate + (
            self.spec.evaluate_final if final else []), flop)
        self._records.append(record)
        if final:
            return False
        reason = decided(self.policy, self._partial(), self._points(), self.baseline)
        if reason is None:
            return False
        self._early_stop = EarlyStop(step=state.step, reason=reason)
        if self.spec.evaluate_final:
            extra = self._evaluate(state, model, self.spec.evaluate_final, flop)
            record.evals.update(extra.evals)
        return True

    # -- what the cell keeps between checkpoints (certify.run.cell_state) -----------------

    def kept(self) -> dict[str, Any]:
        """What the cell has recorded so far, as plain data."""
        return {"records": [r.model_dump(mode="json") for r in self._records],
                "samples": self._samples, "eval_seconds": self.eval_seconds,
                "used_evals": sorted(self.used_evals)}

    def resume_from(self, kept: dict[str, Any]) -> None:
        """Take back what :meth:`kept` gave; the recipe has made its examples and model."""
        self._records = [CheckpointRecord.model_validate(r) for r in kept["records"]]
        self._samples = list(kept["samples"])
        self.eval_seconds = kept["eval_seconds"]
        self.used_evals = set(kept["used_evals"])

    # -- internals -----------------------------------------------------------------------

    def _tell(self, state: Any) -> None:
        """Tell the driver about the checkpoint just recorded, with an ETA for the cell."""
        if self.on_checkpoint is not None:
            self.on_checkpoint(checkpoint_note(
                self.spec, self._records, state.seconds, self.eval_seconds,
                time.perf_counter() - self._started))

    def _evaluate(self, state: Any, model: Any, eval_ids: list[str],
                  flop: float) -> CheckpointRecord:
        started = time.perf_counter()
        evals = {}
        for eval_id in eval_ids:
            evaluator = self._evaluators[eval_id]
            transform = self._transforms.get(eval_id)
            record, samples = (evaluator(model, self.tokenizer) if transform is None else
                               evaluator(model, self.tokenizer, transform=transform))
            self.used_evals.add(eval_id)
            evals[eval_id] = record
            self._samples += [{"eval": eval_id, "step": state.step, **s} for s in samples]
        self.eval_seconds += time.perf_counter() - started
        return CheckpointRecord(step=state.step, samples=state.samples, tokens=state.tokens,
                                flop=flop, seconds=round(state.seconds, 4),
                                loss=state.last_loss, evals=evals)

    def _partial(self) -> CellRecord:
        return self.record("ok", None, "", 0.0)

    def _points(self) -> dict[str, list[Point]]:
        part = self._partial()
        out: dict[str, list[Point]] = {}
        for cp in part.checkpoints:
            for eval_id, rec in cp.evals.items():
                out.setdefault(eval_id, []).append(Point(part, cp, rec))
        return out

    @property
    def samples(self) -> list[dict[str, Any]]:
        """Every per-sample row the cell's evaluations produced."""
        return self._samples

    def record(self, status: Literal["ok", "error"], error: ErrorInfo | None, started: str,
               seconds: float) -> CellRecord:
        return cell_record(
            self.spec, status=status, error=error,
            checkpoints=list(self._records), early_stop=self._early_stop,
            train_categories=self.train_categories, n_parameters=self.handle.n_parameters,
            n_trainable=self._n_trainable, started=started, finished=utc_now(),
            seconds=round(seconds, 3), seconds_eval=round(self.eval_seconds, 3),
            notes={**self.notes, "evaluators": {e: self._evaluators[e].identity()
                                                 for e in sorted(self.used_evals)}},
            worker=hostname_hash())


def cell_record(spec: CellSpec, **fields: Any) -> CellRecord:
    """The record of ``spec`` with what running it produced."""
    # The plan only writes these roles and purposes; CellRecord validates them again.
    role = cast(Literal["candidate", "reference"], spec.role)
    purpose = cast(Literal["harmful", "benign", "baseline"], spec.purpose)
    return CellRecord(id=spec.id, role=role, attack_id=spec.attack_id, technique=spec.technique,
                      technique_version=spec.technique_version, purpose=purpose,
                      params=spec.params, seed=spec.seed, max_steps=spec.max_steps, **fields)


def died_record(spec: CellSpec, message: str) -> CellRecord:
    """The record of a cell whose worker process died (killed for memory, crashed)."""
    return cell_record(spec, status="error", error=ErrorInfo(
        kind="worker_died", message=message,
        hint="often the machine ran out of memory; resume to retry the cell, with more memory, "
             "--dtype bfloat16 or a smaller batch"))


def is_out_of_memory(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, torch.OutOfMemoryError | MemoryError):
        return True
    # torch's CPU allocator reports exhaustion as a plain RuntimeError, not OutOfMemoryError.
    text = str(exc)
    return isinstance(exc, RuntimeError) and "CPUAllocator" in text and (
        "can't allocate memory" in text or "not enough memory" in text)


def _as_cell_error(exc: BaseException) -> CellError:
    if isinstance(exc, CellError):
        return exc
    if is_out_of_memory(exc):
        return CellError("out_of_memory", f"out of memory: {str(exc).splitlines()[0][:200]}",
                         hint="use a smaller batch_size, the lora attack, --dtype bfloat16 or "
                              "--gradient-checkpointing")
    if isinstance(exc, DataError):
        return CellError("data", exc.message, hint=exc.hint)
    last = traceback.format_exception_only(type(exc), exc)[-1].strip()
    return CellError("internal", f"{last}", hint="this looks like a bug in certify or a plug-in; "
                     "the full traceback is in the run directory's events.jsonl")


def run_cell(spec: CellSpec, handle: ModelHandle, evaluators: dict[str, Evaluator],
             policy: Policy, autocast_dtype: Any = None, gang: Any = None,
             on_checkpoint: Callable[[CheckpointNote], None] | None = None,
             keep: KeepState | None = None, baseline: CellRecord | None = None,
             ) -> tuple[CellRecord, list[dict[str, Any]]]:
    """Run one cell to completion (or error); return its record and its per-sample rows.
    ``baseline``: the role's finished baseline cell, if known (for early stopping)."""
    started, t0 = utc_now(), time.perf_counter()
    handle.restore()
    seed_everything(spec.seed)
    run = CellRun(spec, handle, evaluators, policy, autocast_dtype, gang, on_checkpoint, keep,
                  baseline)
    attack = registry.get("attack", spec.technique)
    status: Literal["ok", "error"]
    error: ErrorInfo | None
    try:
        attack.fn(run, attack.params.model_validate(spec.params))
        status, error = "ok", None
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # every failure becomes an error record, never a verdict
        err = _as_cell_error(exc)
        log.error("cell %s failed: %s\n%s", spec.id, err.message, traceback.format_exc())
        status, error = "error", ErrorInfo(kind=err.kind, message=err.message, hint=err.hint)
    finally:
        if gang is not None:
            gang.release()
    return run.record(status, error, started, time.perf_counter() - t0), run.samples
