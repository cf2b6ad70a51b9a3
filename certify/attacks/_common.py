"""Parameters and the fit helper shared by the fine-tuning recipes."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from certify import registry
from certify.data.load import DatasetRef


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
    warmup_steps: int = Field(default=0, ge=0)
    weight_decay: float = Field(default=0.0, ge=0)
    grad_clip: float | None = Field(default=1.0, gt=0)
    max_length: int = Field(default=512, ge=16)
    system_prompt: str | None = None


class LoraParams(FinetuneParams):
    lora_rank: int = Field(default=8, ge=1, le=4096)
    lora_alpha: int | None = Field(default=None, ge=1)
    """Default: twice the rank."""
    lora_dropout: float = Field(default=0.0, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"


def fit(run: Any, model: Any, examples: list[Any], p: FinetuneParams) -> Any:
    """Train ``model`` on ``examples`` to p.max_steps, evaluating at the cell's checkpoints."""
    from certify import train

    encoded = train.encode(run.tokenizer, examples, p.max_length)
    batch_iter = train.batches(encoded, p.batch_size, run.seed, run.tokenizer.pad_token_id)
    optimizer = train.make_optimizer(model.parameters(), p.optimizer, p.learning_rate,
                                     p.weight_decay)
    schedule = train.make_schedule(optimizer, p.schedule, p.warmup_steps, p.max_steps)
    return train.train(model, batch_iter, optimizer, schedule, p.max_steps, run.checkpoints,
                       lambda state: run.checkpoint(state, model), device=run.device,
                       grad_clip=p.grad_clip, autocast_dtype=run.autocast_dtype)
