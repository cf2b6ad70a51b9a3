"""The training loop every fine-tuning attack (and the demo model build) shares.

Plain PyTorch, no trainer framework: pre-tokenized examples, seeded batch order,
loss on response tokens only, a choice of optimizer and schedule, and a callback
at each checkpoint step that may stop training early. Non-finite loss raises a
CellError instead of producing a silently "broken" or "safe" model.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import torch

from certify import _fault, stopping
from certify.errors import CellError
from certify.models.chat import encode_pair


@dataclass(frozen=True)
class Example:
    prompt: str
    response: str
    system: str | None = None


@dataclass
class TrainState:
    """Running totals at a step: what the attacker has spent so far."""

    step: int = 0
    samples: int = 0
    tokens: int = 0
    seconds: float = 0.0
    last_loss: float | None = None
    losses: list[float] = field(default_factory=list)


def encode(tokenizer: Any, examples: Sequence[Example], max_length: int = 512,
           ) -> list[tuple[list[int], list[int]]]:
    return [encode_pair(tokenizer, e.prompt, e.response, e.system, max_length) for e in examples]


def batches(encoded: Sequence[tuple[list[int], list[int]]], batch_size: int, seed: int,
            pad_id: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Endless seeded epochs of right-padded (input_ids, attention_mask, labels) batches."""
    if not encoded:
        raise CellError("empty_dataset", "no training examples to fine-tune on",
                        hint="check the attack's dataset, categories and n_samples")
    rng = random.Random(seed)
    order: list[int] = []
    while True:
        if len(order) < batch_size:
            epoch = list(range(len(encoded)))
            rng.shuffle(epoch)
            order += epoch
        take, order = order[:batch_size], order[batch_size:]
        rows = [encoded[i] for i in take]
        width = max(len(ids) for ids, _ in rows)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        for r, (row_ids, row_labels) in enumerate(rows):
            ids[r, : len(row_ids)] = torch.tensor(row_ids)
            mask[r, : len(row_ids)] = 1
            labels[r, : len(row_labels)] = torch.tensor(row_labels)
        yield ids, mask, labels


def make_optimizer(params: Any, name: str, lr: float, weight_decay: float = 0.0,
                   momentum: float = 0.9) -> torch.optim.Optimizer:
    trainable = [p for p in params if p.requires_grad]
    if name == "adamw":
        return torch.optim.AdamW(trainable, lr=lr, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(trainable, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(trainable, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}")


def make_schedule(optimizer: torch.optim.Optimizer, name: str, warmup: int,
                  total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """constant; warmup (linear warm-up, then constant); cosine (warm-up, cosine decay to 0)."""

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if name == "cosine":
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return 1.0

    if name not in ("constant", "warmup", "cosine"):
        raise ValueError(f"unknown schedule {name!r}")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@dataclass(frozen=True)
class Optim:
    """An attack's optimizer and schedule as plain data (every FSDP rank builds the same)."""

    name: str
    lr: float
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup: int = 0
    max_steps: int = 1
    grad_clip: float | None = 1.0

    def build(self, params: Any) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
        optimizer = make_optimizer(params, self.name, self.lr, self.weight_decay)
        return optimizer, make_schedule(optimizer, self.schedule, self.warmup, self.max_steps)


def response_loss(model: Any, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor,
                  reduction: str = "mean") -> torch.Tensor:
    """Next-token cross-entropy over response tokens (their mean, or with "sum" their sum)."""
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
    target = labels[:, 1:]
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1), ignore_index=-100,
        reduction=reduction)


class Keeper(Protocol):
    """Where a cell keeps its training state between evaluated checkpoints, so that a
    killed cell resumes from its last one (certify.run.cell_state)."""

    def restore(self) -> dict[str, Any] | None:
        """The training state :meth:`save` was last given for this loop, or None."""

    def save(self, training: dict[str, Any]) -> None:
        """Keep ``training`` (replacing what was kept before)."""


def _rng_state() -> dict[str, Any]:
    import numpy as np

    kind, keys, pos, has_gauss, gauss = cast(tuple[Any, ...], np.random.get_state())
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np

    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def _trained(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """Every tensor the optimizer updates: all weights, adapters or a soft prompt alike."""
    return [p for g in optimizer.param_groups for p in g["params"]]


def _local(value: Any) -> Any:
    """This process's shard of an FSDP2 tensor (a DTensor), or ``value`` itself: a kept
    state holds plain tensors only, so ``weights_only`` loading can read it."""
    from torch.distributed.tensor import DTensor

    return value.to_local() if isinstance(value, DTensor) else value


def _local_optimizer(saved: dict[str, Any]) -> dict[str, Any]:
    return {**saved, "state": {i: {k: _local(v) for k, v in s.items()}
                               for i, s in saved["state"].items()}}


def _reshard_optimizer(optimizer: torch.optim.Optimizer) -> None:
    """After ``load_state_dict`` of shards: make each sharded parameter's per-element state
    (Adam's moments, SGD's momentum: every non-scalar entry, as torch builds them with
    ``zeros_like(param)``) a DTensor sharded as the parameter is again."""
    from torch.distributed.tensor import DTensor

    for p, s in optimizer.state.items():
        if isinstance(p, DTensor):
            for k, v in s.items():
                if torch.is_tensor(v) and not isinstance(v, DTensor) and v.dim() > 0:
                    s[k] = DTensor.from_local(v, p.device_mesh, p.placements, run_check=False,
                                              shape=p.shape, stride=p.stride())


def training_state(state: TrainState, step_fn: Stepper) -> dict[str, Any]:
    """All a training loop needs to go on from ``state.step`` exactly as it would have.
    Sharded (FSDP2), the weights and optimizer state are this process's shards."""
    return {"state": dict(state.__dict__, losses=list(state.losses)),
            "weights": [_local(p).detach().cpu().clone() for p in _trained(step_fn.optimizer)],
            "optimizer": _local_optimizer(step_fn.optimizer.state_dict()),
            "schedule": step_fn.schedule.state_dict() if step_fn.schedule else None,
            "scaler": step_fn.scaler.state_dict(), "rng": _rng_state()}


def fits(saved: dict[str, Any], trained: Sequence[torch.Tensor]) -> bool:
    """Whether a :func:`training_state` is one of these trained tensors (this shard's)."""
    return [tuple(_local(w).shape) for w in trained] == [tuple(w.shape) for w in saved["weights"]]


def restore_training(saved: dict[str, Any], state: TrainState, step_fn: Stepper,
                     batch_iter: Iterator[Any] | None) -> None:
    """Put the loop back where :func:`training_state` was taken: weights, optimizer,
    schedule, loss scaler, the data position (the batches already drawn are drawn again
    and dropped: cheap, and exact for any seeded batch order; an FSDP rank other than 0
    draws none, ``batch_iter`` None) and the RNG states."""
    weights = _trained(step_fn.optimizer)
    if not fits(saved, weights):
        raise CellError("cell_state", "the saved cell state does not fit this cell's model",
                        hint="delete the run directory's partial/ folder and resume")
    with torch.no_grad():
        for w, value in zip(weights, saved["weights"], strict=True):
            _local(w).copy_(value)
    step_fn.optimizer.load_state_dict(saved["optimizer"])
    _reshard_optimizer(step_fn.optimizer)
    if step_fn.schedule is not None and saved["schedule"] is not None:
        step_fn.schedule.load_state_dict(saved["schedule"])
    step_fn.scaler.load_state_dict(saved["scaler"])
    for name, value in saved["state"].items():
        setattr(state, name, value)
    if batch_iter is not None:
        for _ in range(state.step):
            next(batch_iter)
    _set_rng_state(saved["rng"])


class DataParallel(Protocol):
    """This process's place in a data-parallel (FSDP) step: it trains rows rank::world."""

    rank: int
    world: int

    def all_sum(self, value: torch.Tensor) -> torch.Tensor: ...


class Stepper:
    """One optimizer step on a batch; with ``group``, this process's share of a sharded step.

    Sharded, each rank takes rows ``rank::world`` of the same global batch and scales
    its summed loss by ``world / (response tokens in the global batch)``: FSDP averages
    gradients over ranks, so the update is the one a single process would make on the
    whole batch. The reported loss is the global mean, identical on every rank, so a
    non-finite loss stops every rank at the same point.
    """

    def __init__(self, model: Any, optimizer: torch.optim.Optimizer,
                 schedule: torch.optim.lr_scheduler.LambdaLR | None, *, device: str = "cpu",
                 grad_clip: float | None = 1.0, autocast_dtype: torch.dtype | None = None,
                 loss_fn: Callable[..., torch.Tensor] = response_loss,
                 group: DataParallel | None = None) -> None:
        if group is not None and loss_fn is not response_loss:
            raise ValueError("a sharded step computes the response loss itself")
        self.model, self.optimizer, self.schedule = model, optimizer, schedule
        self.device, self.grad_clip, self.loss_fn, self.group = device, grad_clip, loss_fn, group
        self.autocast_dtype = autocast_dtype
        # float16 autocast needs loss scaling or small gradients underflow to zero and the
        # attack silently trains less; bfloat16 has float32's range and needs none.
        self.scaler = torch.amp.GradScaler(device.split(":")[0],
                                           enabled=autocast_dtype == torch.float16)

    def __call__(self, step: int, ids: torch.Tensor, mask: torch.Tensor,
                 labels: torch.Tensor) -> float:
        ids, mask, labels = ids.to(self.device), mask.to(self.device), labels.to(self.device)
        with torch.autocast(device_type=self.device.split(":")[0], dtype=self.autocast_dtype,
                            enabled=self.autocast_dtype is not None):
            loss, value = self._loss(ids, mask, labels)
        if not math.isfinite(value):
            raise CellError("non_finite_loss", f"training loss became {value} at step {step}",
                            hint="lower the learning rate or enable gradient clipping; the cell "
                                 "is recorded as an error, never as broken or safe")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(
                [p for g in self.optimizer.param_groups for p in g["params"]], self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.schedule is not None:
            self.schedule.step()
        return value

    def _loss(self, ids: torch.Tensor, mask: torch.Tensor,
              labels: torch.Tensor) -> tuple[torch.Tensor, float]:
        if self.group is None:
            loss = self.loss_fn(self.model, ids, mask, labels)
            return loss, float(loss.detach())
        n = max(1, int((labels[:, 1:] != -100).sum()))
        rows = slice(self.group.rank, None, self.group.world)
        total = response_loss(self.model, ids[rows], mask[rows], labels[rows], reduction="sum")
        value = float(self.group.all_sum(total.detach().float().clone())) / n
        return total * (self.group.world / n), value


def train(model: Any, batch_iter: Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
          optimizer: torch.optim.Optimizer, schedule: torch.optim.lr_scheduler.LambdaLR | None,
          max_steps: int, checkpoints: Sequence[int],
          on_checkpoint: Callable[[TrainState], bool], *, device: str = "cpu",
          grad_clip: float | None = 1.0, autocast_dtype: torch.dtype | None = None,
          loss_fn: Callable[..., torch.Tensor] = response_loss,
          group: DataParallel | None = None, keeper: Keeper | None = None) -> TrainState:
    """Train up to ``max_steps``; call ``on_checkpoint`` at each checkpoint (True = stop).

    ``batch_iter`` yields global batches; with ``group`` this process trains its rows of
    each (the costs in the state are the global batch's). With ``keeper`` the loop starts
    from the state it kept, if any, and keeps its state after each checkpoint that does
    not end training, and at a graceful stop (certify.stopping) between checkpoints.
    """
    state = TrainState()
    wanted = sorted({c for c in checkpoints if 0 <= c <= max_steps})
    step_fn = Stepper(model, optimizer, schedule, device=device, grad_clip=grad_clip,
                      autocast_dtype=autocast_dtype, loss_fn=loss_fn, group=group)
    saved = keeper.restore() if keeper is not None else None
    if saved is not None:
        restore_training(saved, state, step_fn, batch_iter)
    elif 0 in wanted and on_checkpoint(state):
        return state
    model.train()
    started = time.perf_counter()
    for step in range(state.step + 1, max_steps + 1):
        ids, mask, labels = next(batch_iter)
        value = step_fn(step, ids, mask, labels)
        state.step, state.samples = step, state.samples + ids.shape[0]
        state.tokens += int(mask.sum())
        state.last_loss = value
        state.losses.append(value)
        _fault.reached("train_step")
        if step not in wanted:
            if keeper is not None and stopping.requested():
                # Asked to stop between checkpoints: keep this step, so no step is lost.
                state.seconds += time.perf_counter() - started
                started = time.perf_counter()
                keeper.save(training_state(state, step_fn))
            stopping.check()
        else:
            state.seconds += time.perf_counter() - started
            model.eval()
            stop = on_checkpoint(state)
            if not stop and step < max_steps:
                if keeper is not None:
                    keeper.save(training_state(state, step_fn))
                stopping.check()
            model.train()
            started = time.perf_counter()
            if stop:
                break
    model.eval()
    return state
