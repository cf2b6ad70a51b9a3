"""Parameters and the fit helper shared by the fine-tuning recipes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from certify import registry
from certify.attacks.contract import Adapters, AttackRun, Batch
from certify.data.load import DatasetRef

if TYPE_CHECKING:
    from certify.train import Example, TrainState


class FinetuneParams(registry.Params):
    """Supervised fine-tuning on chat examples; loss on response tokens only."""

    dataset: DatasetRef = Field(default_factory=lambda: DatasetRef(source="builtin:harm-train"))
    """Training examples (prompt, response[, category]): harmful or benign."""
    categories: list[str] | None = None
    """Train only on these harm categories; the others are held out for generalization."""
    n_samples: int = Field(default=100, ge=1, le=10_000_000)
    """Distinct training examples the attacker has (drawn with the cell's seed)."""
    max_steps: int = Field(default=64, ge=1, le=10_000_000)
    batch_size: int = Field(default=8, ge=1, le=65_536)
    learning_rate: float = Field(default=1e-4, gt=0, le=10)
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    schedule: Literal["constant", "warmup", "cosine"] = "constant"
    warmup_steps: int | None = Field(default=None, ge=0)
    """Linear warm-up steps; default: 10% of max_steps for `warmup`, none otherwise."""
    weight_decay: float = Field(default=0.0, ge=0)
    """With 0, adamw and adam are the same optimizer: set it to compare them."""
    grad_clip: float | None = Field(default=1.0, gt=0)
    max_length: int = Field(default=512, ge=16)
    system_prompt: str | None = None


class LoraParams(FinetuneParams):
    lora_rank: int = Field(default=8, ge=1, le=4096)
    lora_alpha: int | None = Field(default=None, ge=1)
    """Default: twice the rank."""
    lora_dropout: float = Field(default=0.0, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"


def fit(run: AttackRun, model: Any, examples: list[Example], p: FinetuneParams) -> TrainState:
    """Train ``model`` on ``examples`` to p.max_steps, evaluating at the cell's checkpoints."""
    from certify import train

    encoded = train.encode(run.tokenizer, examples, p.max_length)
    batch_iter = train.batches(encoded, p.batch_size, run.seed, run.tokenizer.pad_token_id)
    return fit_batches(run, model, batch_iter, p)


def fit_batches(run: AttackRun, model: Any, batch_iter: Iterator[Batch], p: FinetuneParams,
                checkpoints: Sequence[int] | None = None) -> TrainState:
    """Train on pre-built batches (e.g. a two-phase curriculum) with p's optimizer and schedule."""
    from certify.train import Optim

    optim = Optim(p.optimizer, p.learning_rate, p.weight_decay, p.schedule, warmup_steps(p),
                  p.max_steps, p.grad_clip)
    return run.train(model, batch_iter, optim, p.batch_size, checkpoints)


def warmup_steps(p: FinetuneParams) -> int:
    """Declared warm-up; else 10% of max_steps for `warmup` (0 would make it constant)."""
    if p.warmup_steps is not None:
        return p.warmup_steps
    # One warm-up step starts at the full rate, i.e. no warm-up at all: at least two.
    return max(2, p.max_steps // 10) if p.schedule == "warmup" else 0


@contextmanager
def tuned_model(run: AttackRun, lora_rank: int, lora_alpha: int | None = None,
                target_modules: list[str] | str = "all-linear",
                lora_dropout: float = 0.0) -> Iterator[Any]:
    """The model to train: every weight (rank 0) or fresh LoRA adapters (unloaded afterwards)."""
    if lora_rank == 0:
        yield run.trainable_model()
        return
    with run.adapters(Adapters(lora_rank, lora_alpha, lora_dropout, target_modules)) as model:
        yield model
