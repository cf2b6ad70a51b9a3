"""Fully sharded copies of a model for training one cell across several processes (FSDP2).

Rank 0 holds the loaded model (the one evaluations read); every rank builds the same
architecture on the meta device, shards it with ``torch.distributed.fsdp.fully_shard``
(one unit per decoder layer, as the model's ``_no_split_modules`` names them, plus
the root), and receives its shard of rank 0's current weights. No rank but 0 ever
holds the whole model. At a checkpoint the shards are gathered back into rank 0's
model, which the evaluations then read exactly as in a single-process cell.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

# A rank waits in a collective while rank 0 evaluates a checkpoint or runs a LoRA cell
# alone; that can take long. A dead rank is noticed by the driver, which stops the gang.
COLLECTIVE_TIMEOUT = timedelta(hours=12)


@dataclass
class Group:
    """This process's place in the gang: rank, world size, and its device mesh."""

    rank: int
    world: int
    device: str
    mesh: Any = None

    @property
    def backend(self) -> str:
        return "nccl" if self.device == "cuda" else "gloo"

    def all_sum(self, value: torch.Tensor) -> torch.Tensor:
        dist.all_reduce(value)
        return value

    def broadcast(self, message: Any = None) -> Any:
        """Rank 0 sends ``message``; every rank returns it."""
        box = [message]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def join(rank: int, world: int, port: int, device: str) -> Group:
    """Join the process group of a gang on this machine (gloo on CPU, NCCL on CUDA)."""
    from torch.distributed.device_mesh import init_device_mesh

    os.environ["RANK"] = str(rank)  # torchrun's convention; fault injection reads it
    if device == "cuda":
        torch.cuda.set_device(rank)
    group = Group(rank, world, device)
    dist.init_process_group(group.backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world, timeout=COLLECTIVE_TIMEOUT)
    group.mesh = init_device_mesh(device, (world,))
    return group


def leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


@dataclass(frozen=True)
class Skeleton:
    """What a rank needs to build the architecture (sent by rank 0: no rank reloads files)."""

    config: Any
    dtype: torch.dtype
    gradient_checkpointing: bool


def skeleton_of(model: Any, gradient_checkpointing: bool) -> Skeleton:
    return Skeleton(model.config, model.dtype, gradient_checkpointing)


def sharded_copy(group: Group, skeleton: Skeleton, source: Any | None) -> Any:
    """A trainable FSDP copy of rank 0's ``source`` model (None on the other ranks)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
    from torch.distributed.fsdp import fully_shard
    from transformers import AutoModelForCausalLM

    from certify.models.load import enable_checkpointing

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(skeleton.config, dtype=skeleton.dtype)
    if skeleton.gradient_checkpointing:
        enable_checkpointing(model)
    units = set(getattr(model, "_no_split_modules", None) or [])
    for module in model.modules():
        if type(module).__name__ in units:
            fully_shard(module, mesh=group.mesh)
    fully_shard(model, mesh=group.mesh)
    model.to_empty(device=group.device)
    weights = source.state_dict() if source is not None else {}
    set_model_state_dict(model, weights, options=StateDictOptions(
        full_state_dict=True, broadcast_from_rank0=True))
    # Buffers outside the state dict (rotary frequencies) are garbage after to_empty.
    own = dict(source.named_buffers()) if source is not None else {}
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if source is not None:
                buffer.copy_(own[name])
            dist.broadcast(buffer, src=0)
    for p in model.parameters():
        p.requires_grad_(True)
    model.train()
    return model


def gather_into(model: Any, target: Any | None) -> None:
    """Collect the full weights of sharded ``model`` into rank 0's ``target`` (collective)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    full: dict[str, Any] = get_model_state_dict(model, options=StateDictOptions(
        full_state_dict=True, cpu_offload=True))
    if target is None:
        return
    own = target.state_dict()
    with torch.no_grad():
        for name, value in full.items():
            own[name].copy_(value.to(own[name].device))
