"""Run one cell: restore the model, seed, call the attack recipe, evaluate at checkpoints.

The attack recipe receives a :class:`CellRun`, the small interface it needs: its
examples, the model to train, the checkpoints, and ``checkpoint(state, model)``
which evaluates the model, records the numbers, and says whether the outcome is
already decided (early stop). Failures become an ``error`` record with the reason;
they never become "broken" or "safe".
"""

from __future__ import annotations

import logging
import random
import time
import traceback
from datetime import UTC, datetime
from typing import Any, Literal, cast

from certify import registry
from certify.assess.early_stop import decided
from certify.assess.trajectory import Point
from certify.data.load import DatasetRef, load_dataset
from certify.data.overlap import overlap_by_eval
from certify.environment import hostname_hash
from certify.errors import CellError, DataError
from certify.evals.base import Evaluator
from certify.evidence import CellRecord, CheckpointRecord, EarlyStop, ErrorInfo
from certify.models.chat import template_description
from certify.models.load import ModelHandle
from certify.plan import CellSpec
from certify.policy.schema import Policy

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class CellRun:
    """The context an attack recipe runs in."""

    def __init__(self, spec: CellSpec, handle: ModelHandle, evaluators: dict[str, Evaluator],
                 policy: Policy, autocast_dtype: Any = None, gang: Any = None) -> None:
        self.spec, self.handle, self.evaluators, self.policy = spec, handle, evaluators, policy
        self.gang = gang
        self.seed = spec.seed
        self.checkpoints = spec.checkpoints
        self.tokenizer = handle.tokenizer
        self.device = handle.device
        self.autocast_dtype = autocast_dtype
        self.flop_factor = 6
        self.n_trainable = 0
        self.train_categories: list[str] | None = None
        self.records: list[CheckpointRecord] = []
        self.samples: list[dict[str, Any]] = []
        # How prompts were formatted: the tokenizer's chat template, or the plain fallback.
        self.notes: dict[str, Any] = {"chat_template": template_description(handle.tokenizer)}
        self.early_stop: EarlyStop | None = None
        self.eval_seconds = 0.0
        self.used_evals: set[str] = set()

    # -- what recipes call ---------------------------------------------------------------

    def examples(self, ref: DatasetRef, n: int | None, categories: list[str] | None = None,
                 system: str | None = None) -> list[Any]:
        """``n`` distinct (prompt, response) examples drawn with the cell's seed."""
        from certify.train import Example

        dataset = load_dataset(ref)
        dataset.require("prompt", "response")
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
             "overlap": overlap_by_eval(chosen, self.evaluators)})
        return [Example(r.prompt, r.response or "", system) for r in chosen]

    def trainable_model(self) -> Any:
        """The model, all weights trainable (restored from the snapshot after the cell).

        With ``--fsdp`` it is a sharded copy trained by every process of the gang; the
        handle's model receives its weights at each checkpoint and is what is evaluated.
        """
        if self.gang is None:
            model = self.handle.trainable()
        else:
            self.handle.dirty = True  # gathered weights land in the handle's model
            model = self.gang.shard(self.handle)
            self.note(fsdp={"processes": self.gang.world, "backend": self.gang.group.backend})
        self.n_trainable = sum(p.numel() for p in self.handle.model.parameters())
        return model

    def frozen_model(self) -> Any:
        """The model with frozen weights, for adapter methods that leave them untouched."""
        return self.handle.model

    def train(self, model: Any, batch_iter: Any, optim: Any, batch_size: int,
              checkpoints: Any) -> Any:
        """Train ``model`` on global batches to optim.max_steps, evaluating at ``checkpoints``."""
        from certify import train

        optimizer, schedule = optim.build(model.parameters())
        args = (optimizer, schedule, optim.max_steps, checkpoints,
                lambda state: self.checkpoint(state, model))
        kwargs = {"device": self.device, "grad_clip": optim.grad_clip,
                  "autocast_dtype": self.autocast_dtype}
        if self.gang is None or model is not self.gang.model:  # LoRA: this process alone
            return train.train(model, batch_iter, *args, **kwargs)
        with self.gang.fitting(optim, self.autocast_dtype, batch_size,
                               self.handle.model) as relay:
            return train.train(model, relay(batch_iter), *args, group=self.gang.group, **kwargs)

    def note(self, **values: Any) -> None:
        """Attack-specific disclosures that go into the evidence (e.g. cipher competence)."""
        self.notes.update(values)

    def checkpoint(self, state: Any, model: Any = None) -> bool:
        """Evaluate at this step, record it, and return True when the cell should stop."""
        model = model if model is not None else self.handle.model
        if self.gang is not None and model is self.gang.model:
            if state.step > 0:
                self.gang.gather_into(self.handle.model)
            model = self.handle.model
        final = state.step >= self.spec.max_steps
        record = self._evaluate(state, model, self.spec.evaluate + (
            self.spec.evaluate_final if final else []))
        self.records.append(record)
        if final:
            return False
        reason = decided(self.policy, self._partial(), self._points())
        if reason is None:
            return False
        self.early_stop = EarlyStop(step=state.step, reason=reason)
        if self.spec.evaluate_final:
            extra = self._evaluate(state, model, self.spec.evaluate_final)
            record.evals.update(extra.evals)
        return True

    # -- internals -----------------------------------------------------------------------

    def _evaluate(self, state: Any, model: Any, eval_ids: list[str]) -> CheckpointRecord:
        started = time.perf_counter()
        evals = {}
        for eval_id in eval_ids:
            evaluator = self.evaluators[eval_id]
            record, samples = evaluator(model, self.tokenizer)
            self.used_evals.add(eval_id)
            evals[eval_id] = record
            self.samples += [{"eval": eval_id, "step": state.step, **s} for s in samples]
        self.eval_seconds += time.perf_counter() - started
        return CheckpointRecord(step=state.step, samples=state.samples, tokens=state.tokens,
                                flop=float(self.flop_factor * self.handle.n_parameters
                                           * state.tokens),
                                seconds=round(state.seconds, 4), loss=state.last_loss,
                                evals=evals)

    def _partial(self) -> CellRecord:
        return self.record("ok", None, "", 0.0)

    def _points(self) -> dict[str, list[Point]]:
        part = self._partial()
        out: dict[str, list[Point]] = {}
        for cp in part.checkpoints:
            for eval_id, rec in cp.evals.items():
                out.setdefault(eval_id, []).append(Point(part, cp, rec))
        return out

    def record(self, status: Literal["ok", "error"], error: ErrorInfo | None, started: str,
               seconds: float) -> CellRecord:
        s = self.spec
        # The plan only writes these roles and purposes; CellRecord validates them again.
        role = cast(Literal["candidate", "reference"], s.role)
        purpose = cast(Literal["harmful", "benign", "baseline"], s.purpose)
        return CellRecord(
            id=s.id, role=role, attack_id=s.attack_id, technique=s.technique,
            technique_version=s.technique_version, purpose=purpose, params=s.params,
            seed=s.seed, max_steps=s.max_steps, status=status, error=error,
            checkpoints=list(self.records), early_stop=self.early_stop,
            train_categories=self.train_categories, n_parameters=self.handle.n_parameters,
            n_trainable=self.n_trainable, started=started, finished=_now(),
            seconds=round(seconds, 3), seconds_eval=round(self.eval_seconds, 3),
            notes={**self.notes, "evaluators": {e: self.evaluators[e].identity()
                                                 for e in sorted(self.used_evals)}},
            worker=hostname_hash())


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
             policy: Policy, autocast_dtype: Any = None,
             gang: Any = None) -> tuple[CellRecord, list[dict[str, Any]]]:
    """Run one cell to completion (or error); return its record and its per-sample rows."""
    started, t0 = _now(), time.perf_counter()
    handle.restore()
    seed_everything(spec.seed)
    run = CellRun(spec, handle, evaluators, policy, autocast_dtype, gang)
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
