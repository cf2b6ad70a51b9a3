"""Load a model once per process and restore its weights between cells from memory."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch

from certify.errors import ModelError
from certify.models.source import ModelIdentity, ModelSource, check_safety

log = logging.getLogger(__name__)


@dataclass
class LoadOptions:
    device: str = "cpu"
    dtype: str = "float32"
    trust_remote_code: bool = False
    allow_pickle: bool = False
    gradient_checkpointing: bool = False


@dataclass
class ModelHandle:
    """A loaded model, its tokenizer, and an in-memory snapshot of its weights."""

    role: str
    source: ModelSource
    identity: ModelIdentity
    model: Any
    tokenizer: Any
    options: LoadOptions
    snapshot: dict[str, torch.Tensor] = field(default_factory=dict)
    dirty: bool = False

    @property
    def device(self) -> str:
        return self.options.device

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def take_snapshot(self) -> None:
        # On GPU the snapshot lives in host memory so it does not halve what can be trained.
        self.snapshot = {k: v.detach().to("cpu", copy=True)
                         for k, v in self.model.state_dict().items()}

    def trainable(self) -> Any:
        """The model for full fine-tuning; it will be restored before the next cell."""
        self.dirty = True
        for p in self.model.parameters():
            p.requires_grad_(True)
        return self.model

    def restore(self) -> None:
        """Put back the original weights (no-op when the last cell did not change them)."""
        if not self.dirty:
            return
        with torch.no_grad():
            for name, tensor in self.model.state_dict().items():
                tensor.copy_(self.snapshot[name].to(tensor.device))
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.dirty = False
        self.model.eval()


_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def load(role: str, source: ModelSource, identity: ModelIdentity,
         options: LoadOptions) -> ModelHandle:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_safety(source, allow_pickle=options.allow_pickle,
                 trust_remote_code=options.trust_remote_code)
    kwargs: dict[str, Any] = {"trust_remote_code": options.trust_remote_code}
    if source.gguf_file:
        kwargs["gguf_file"] = source.gguf_file
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.load_dir, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(
            source.load_dir, dtype=_DTYPES[options.dtype],
            use_safetensors=None if options.allow_pickle else not source.gguf_file, **kwargs)
    except ModelError:
        raise
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        raise ModelError(f"cannot load model {source.spec!r}: {type(e).__name__}: "
                         f"{str(e).splitlines()[0][:300]}",
                         hint="is the directory complete and are the weights intact? "
                              "(a truncated safetensors file fails here)") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    model.to(options.device)  # type: ignore[arg-type]  # transformers' stub types to() wrongly
    model.eval()
    if options.gradient_checkpointing:
        enable_checkpointing(model)
    for p in model.parameters():
        p.requires_grad_(False)
    handle = ModelHandle(role, source, identity, model, tokenizer, options)
    handle.take_snapshot()
    return handle


def enable_checkpointing(model: Any) -> None:
    """Recompute activations in the backward pass (trades compute for memory)."""
    enable = getattr(model, "activation_checkpointing_enable", None) or \
        model.gradient_checkpointing_enable  # renamed in transformers 5
    enable()


class ModelPool:
    """Models by role, loaded on first use and kept for the process's lifetime."""

    def __init__(self, sources: dict[str, tuple[ModelSource, ModelIdentity]],
                 options: LoadOptions, max_loaded: int = 2) -> None:
        self.sources = sources
        self.options = options
        self.max_loaded = max_loaded
        self.loaded: dict[str, ModelHandle] = {}

    def get(self, role: str) -> ModelHandle:
        if role not in self.loaded:
            if len(self.loaded) >= self.max_loaded:
                self.loaded.pop(next(iter(self.loaded)))
            source, identity = self.sources[role]
            log.info("loading %s model %s", role, source.spec)
            self.loaded[role] = load(role, source, identity, self.options)
        return self.loaded[role]
