"""A model's size and shape, read without loading weights. Torch-free.

The dry run needs the parameter count, the layer dimensions (for activation and
KV-cache memory) and the weight dtype. They come from ``config.json`` (a local
directory, or the snapshot of a hub id in the user's Hugging Face cache), from a
model provider's declared shape (the demo's builtin recipes), or from a GGUF file's
tensor index. The count is computed from the architecture formula (embeddings,
attention with grouped KV heads, gated or plain MLP, norms, optional untied head,
mixture-of-experts), which the tests check against transformers' own models built
on the meta device.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from certify.errors import ModelError

# Architectures whose MLP has three matrices (gate, up, down) rather than two.
GATED_TYPES = {
    "llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "gemma",
    "gemma2", "gemma3_text", "phi3", "olmo", "olmo2", "granite", "cohere", "starcoder2_gated",
    "deepseek", "internlm2", "yi", "smollm3", "exaone",
}
GATED_ACTS = {"silu", "swiglu", "swish"}
# Architectures with learned absolute position embeddings.
LEARNED_POSITIONS = {"gpt2", "opt", "gpt_neo", "gpt_bigcode", "biogpt", "xglm"}
# Architectures whose linear layers carry biases everywhere, with LayerNorm (weight + bias).
BIASED_TYPES = {"gpt2", "opt", "gpt_neo", "gpt_bigcode", "gpt_neox", "phi", "falcon", "bloom"}
# Architectures whose config class defaults to an untied output head.
UNTIED_BY_DEFAULT = {"llama", "mistral", "mixtral", "qwen2_moe", "qwen3_moe", "phi3", "olmo",
                     "olmo2", "gpt_neox", "granite", "internlm2"}
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}


@dataclass(frozen=True)
class ModelShape:
    """What the cost model needs to know about a model."""

    spec: str
    source: str
    """Where the numbers came from, in words (shown in the preview)."""
    n_params: int
    n_active: int
    """Parameters used per token (differs from n_params for mixture-of-experts)."""
    hidden: int
    ffn: int
    """Width of the MLP's inner layer."""
    layers: int
    kv_dim: int
    """Width of one layer's keys (= values): kv heads x head dim; sizes the KV cache."""
    vocab: int
    max_positions: int | None
    dtype: str | None
    """The checkpoint's stored dtype, when the config says."""
    tokenizer: Path | None = None
    """A tokenizer.json next to the weights, used to count tokens exactly."""


def _first(cfg: dict[str, Any], *keys: str, default: Any = None) -> Any:
    for key in keys:
        if cfg.get(key) is not None:
            return cfg[key]
    return default


def count_parameters(cfg: dict[str, Any]) -> tuple[int, int]:
    """(total, active-per-token) parameters of a decoder-only transformer config."""
    cfg = cfg.get("text_config") or cfg
    model_type = str(cfg.get("model_type", ""))
    h = _first(cfg, "hidden_size", "n_embd", "d_model")
    layers = _first(cfg, "num_hidden_layers", "n_layer", "num_layers")
    vocab = cfg.get("vocab_size")
    if not (h and layers and vocab):
        raise ModelError("config.json lacks hidden_size / num_hidden_layers / vocab_size; "
                         "certify cannot estimate this model's size",
                         hint="give a Hugging Face causal-LM config (Llama, Mistral, Qwen, "
                              "GPT-2, ...)")
    heads = _first(cfg, "num_attention_heads", "n_head", default=1)
    kv_heads = _first(cfg, "num_key_value_heads", default=1 if cfg.get("multi_query") else heads)
    head_dim = _first(cfg, "head_dim", default=h // heads)
    inter = _first(cfg, "intermediate_size", "n_inner", "ffn_dim", "d_ff", default=4 * h)
    biased = model_type in BIASED_TYPES
    attn_bias = biased or bool(cfg.get("attention_bias")) or model_type in ("qwen2", "qwen2_moe")
    gated = model_type in GATED_TYPES or str(cfg.get("hidden_act", "")) in GATED_ACTS

    q_out, kv_out = heads * head_dim, kv_heads * head_dim
    attention = h * q_out + 2 * h * kv_out + q_out * h
    if attn_bias:
        attention += q_out + 2 * kv_out + (h if biased else 0)
    expert = (3 if gated else 2) * h * inter + ((inter + h) if biased or cfg.get("mlp_bias") else 0)
    experts = _first(cfg, "num_local_experts", "num_experts", default=1)
    active_experts = _first(cfg, "num_experts_per_tok", default=experts)
    router = h * experts if experts > 1 else 0
    norms = (4 if biased else 2) * h
    per_layer_fixed = attention + router + norms
    embed = vocab * h
    positions = 0
    if model_type in LEARNED_POSITIONS:
        # OPT reserves two extra position rows (its padding offset).
        n_pos = _first(cfg, "n_positions", "max_position_embeddings", default=0)
        positions = (n_pos + (2 if model_type == "opt" else 0)) * h
    tied = cfg.get("tie_word_embeddings", model_type not in UNTIED_BY_DEFAULT)
    head = 0 if tied else vocab * h
    final_norm = (2 if biased else 1) * h
    outside = embed + positions + head + final_norm
    total = outside + layers * (per_layer_fixed + experts * expert)
    active = outside + layers * (per_layer_fixed + active_experts * expert)
    return int(total), int(active)


def shape_from_config(cfg: dict[str, Any], spec: str, source: str,
                      tokenizer: Path | None = None) -> ModelShape:
    total, active = count_parameters(cfg)
    text = cfg.get("text_config") or cfg
    h = _first(text, "hidden_size", "n_embd", "d_model")
    heads = _first(text, "num_attention_heads", "n_head", default=1)
    kv_heads = _first(text, "num_key_value_heads", default=heads)
    head_dim = _first(text, "head_dim", default=h // heads)
    dtype = _first(cfg, "torch_dtype", "dtype")
    ffn = _first(text, "intermediate_size", "n_inner", "ffn_dim", "d_ff", default=4 * h)
    return ModelShape(spec=spec, source=source, n_params=total, n_active=active, hidden=h,
                      ffn=ffn, layers=_first(text, "num_hidden_layers", "n_layer", "num_layers"),
                      kv_dim=kv_heads * head_dim, vocab=text["vocab_size"],
                      max_positions=_first(text, "max_position_embeddings", "n_positions"),
                      dtype=str(dtype) if dtype else None, tokenizer=tokenizer)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"cannot read {path}: {e}") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path} is not a JSON object")
    return data


def _provided(spec: str) -> ModelShape | None:
    """A provider's model (the demo's builtin:NAME) from its declared shape; never built here."""
    from certify.models.source import model_provider

    provided = model_provider(spec)
    if provided is None:
        return None
    provider, name = provided
    config, source, tokenizer = provider.shape(name)
    return shape_from_config(config, spec, source, tokenizer)


def _directory(spec: str, path: Path) -> ModelShape:
    config = path / "config.json"
    if not config.is_file():
        raise ModelError(f"model directory {spec!r} has no config.json",
                         hint="the dry run reads the size from config.json; point at a Hugging "
                              "Face model directory")
    tokenizer = path / "tokenizer.json"
    return shape_from_config(_read_json(config), spec, f"{config}",
                             tokenizer if tokenizer.is_file() else None)


def _gguf(spec: str, path: Path) -> ModelShape:
    try:
        from gguf import GGUFReader
    except ImportError:
        raise ModelError("reading a .gguf file's size needs the `gguf` package",
                         hint="pip install gguf") from None
    reader = GGUFReader(str(path))
    total = int(sum(int(t.n_elements) for t in reader.tensors))
    fields = {k: f.contents() for k, f in reader.fields.items()
              if not k.startswith("tokenizer.ggml.")}
    arch = str(fields.get("general.architecture", "llama"))
    h = int(fields.get(f"{arch}.embedding_length", 0))
    heads = int(fields.get(f"{arch}.attention.head_count", 1) or 1)
    kv = int(fields.get(f"{arch}.attention.head_count_kv", heads) or heads)
    vocab = next((int(t.shape[-1]) if int(t.shape[0]) == h else int(t.shape[0])
                  for t in reader.tensors if t.name == "token_embd.weight"), 0)
    return ModelShape(spec=spec, source=f"GGUF tensor index of {path.name}", n_params=total,
                      n_active=total, hidden=h,
                      ffn=int(fields.get(f"{arch}.feed_forward_length", 4 * h)),
                      layers=int(fields.get(f"{arch}.block_count", 0)),
                      kv_dim=kv * (h // heads if heads else 0), vocab=vocab,
                      max_positions=fields.get(f"{arch}.context_length"), dtype=None)


def _hub(spec: str, revision: str | None) -> ModelShape:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(spec, "config.json", revision=revision)
    if not isinstance(found, str):
        raise ModelError(
            f"hub model {spec!r} has no config.json in the local Hugging Face cache",
            hint=f"the dry run reads only the cache; fetch the config with "
                 f"`hf download {spec} config.json` (weights are not needed) or pass a local "
                 "directory holding its config.json")
    tokenizer = try_to_load_from_cache(spec, "tokenizer.json", revision=revision)
    return shape_from_config(_read_json(Path(found)), spec,
                             f"config.json in the HF cache ({found})",
                             Path(tokenizer) if isinstance(tokenizer, str) else None)


def model_shape(spec: str, revision: str | None = None) -> ModelShape:
    """Size and shape of MODEL (builtin:NAME, directory, .gguf file or hub id); loads no weights."""
    provided = _provided(spec)
    if provided is not None:
        return provided
    path = Path(spec).expanduser()
    if path.is_dir():
        return _directory(spec, path)
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelError(f"model file {spec!r} is not a .gguf file",
                             hint="give a model directory with config.json, a .gguf file, a hub "
                                  "id or builtin:tiny-chat")
        return _gguf(spec, path)
    if spec.count("/") == 1 and not spec.startswith((".", "/", "~")):
        return _hub(spec, revision)
    raise ModelError(f"model {spec!r} not found: no such file or directory",
                     hint="give a local directory with config.json, a .gguf file, a hub id "
                          "(org/name) in your HF cache, or builtin:tiny-chat")
