"""Refusal-direction ablation (Arditi et al. 2024): project one direction out of the weights.

Arditi et al. ("Refusal in language models is mediated by a single direction",
https://arxiv.org/abs/2406.11717) find that chat models refuse through one direction
of the residual stream: the difference between the mean activations on harmful and on
harmless instructions. Orthogonalizing every weight matrix that *writes* to the residual
stream against it stops the model from ever representing it, and the model complies.
The edit needs no training, only forward passes over a few prompts.

The recipe, top to bottom:

1. draw ``n_samples`` harmful prompts (``dataset``) and as many harmless ones
   (``harmless_dataset``) with the cell's seed;
2. read each prompt's residual activation at ``layers`` (the input of each such decoder
   layer, ``hidden_states[layer]``) at the post-instruction positions: the last
   ``positions`` tokens of the chat-formatted prompt (default 1: the last token), where
   the model decides how to answer;
3. at each of the cell's checkpoints ``n`` (a number of samples: the budget axis is
   ``n_samples``, not optimizer steps), estimate one direction per layer and position
   from the first ``n`` harmful and ``n`` harmless prompts (difference of means),
   orthonormalize them, and remove their span from the token embeddings, each attention output
   projection and each MLP down projection (and their biases), starting from the
   unmodified weights every time;
4. hand the edited model back at checkpoint ``n``, charged ``2n`` samples (both halves
   are read), their prompt tokens and a forward pass's FLOP.

So the evidence holds a harm trajectory over the number of samples, judged like a
fine-tuning trajectory, and ``weak_resistance`` with ``cost: samples`` compares what it
took to break the candidate and the reference. It stops early like the others once the
checks are decided.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import Field, field_validator

from certify import registry
from certify.attacks.contract import AttackRun, Spend
from certify.data.load import DatasetRef
from certify.errors import CellError, InputError

ARDITI_2024 = "https://arxiv.org/abs/2406.11717"

WRITERS = ("self_attn.o_proj", "mlp.down_proj")
"""Linear layers that write to the residual stream in Llama-family decoders (Llama,
Mistral, Qwen, SmolLM, Gemma); with the token embeddings, all the writers."""


class RefusalAblationParams(registry.Params):
    """Training-free: a harmful-minus-harmless direction projected out of the weights."""

    dataset: DatasetRef = Field(default_factory=lambda: DatasetRef(source="builtin:harm-train"))
    """Harmful prompts (only the ``prompt`` field is read)."""
    harmless_dataset: DatasetRef = Field(
        default_factory=lambda: DatasetRef(source="builtin:benign-train"))
    """Harmless prompts, as many as harmful ones."""
    categories: list[str] | None = None
    """Draw harmful prompts only from these harm categories."""
    n_samples: int = Field(default=32, ge=1, le=100_000)
    """Prompts of each kind at the last checkpoint; the trajectory axis (checkpoints are
    sample counts: ``checkpoints: [4, 8, 16, 32]``)."""
    layers: list[int] | None = Field(default=None, min_length=1)
    """Decoder layers whose input is read (0 .. num_hidden_layers - 1); one direction per
    layer, and their span is removed. Default: the middle layer (num_hidden_layers // 2)."""
    positions: int = Field(default=1, ge=1, le=64)
    """Post-instruction positions read: the last ``positions`` tokens of the formatted
    prompt, one direction each (per layer), and their span is removed. 1 is the paper's
    single direction at the last token; Arditi et al. compute a candidate at each
    post-instruction position and keep one. More removes a subspace: an extension, not
    the paper's method, for a model whose refusal is not carried by one direction."""
    batch_size: int = Field(default=32, ge=1, le=65_536)
    """Prompts per forward pass when reading activations."""
    system_prompt: str | None = None

    @field_validator("layers")
    @classmethod
    def _layers_distinct(cls, layers: list[int] | None) -> list[int] | None:
        if layers is None:
            return None
        if any(layer < 0 for layer in layers):
            raise ValueError(f"layers {layers}: a layer is an index from 0 (negative ones are "
                             "not counted from the end)")
        if len(set(layers)) != len(layers):
            raise ValueError(f"layers {layers} repeat a layer")
        return sorted(layers)


def check_model(params: RefusalAblationParams, attack_id: str, num_layers: int) -> None:
    """Preflight and dry run: the layers exist in the model (InputError, exit 2)."""
    bad = [layer for layer in params.layers or [] if layer >= num_layers]
    if bad:
        raise InputError(
            f"attack {attack_id!r}: refusal_ablation layer(s) {bad} out of range: the model "
            f"has {num_layers} decoder layers (0 .. {num_layers - 1})",
            hint=f"choose layers below {num_layers}, or leave `layers` out for the middle one")


def chosen_layers(p: RefusalAblationParams, num_layers: int) -> list[int]:
    return p.layers if p.layers is not None else [num_layers // 2]


def read_activations(run: AttackRun, model: Any, prompts: list[str], layers: list[int],
                     positions: int, system: str | None, batch_size: int) -> tuple[Any, int]:
    """(len(layers) * positions, len(prompts), hidden) residual activations at the last
    ``positions`` prompt tokens, and the prompt tokens read."""
    import torch

    from certify.models.chat import format_prompt

    tok = run.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    encoded = [tok(format_prompt(tok, p, system), add_special_tokens=False)["input_ids"]
               for p in prompts]
    shortest = min(len(ids) for ids in encoded)
    if positions > shortest:
        raise CellError("config", f"refusal_ablation reads the last {positions} prompt "
                        f"tokens, but a formatted prompt has only {shortest}",
                        hint=f"use positions <= {shortest}")
    out = []
    with torch.no_grad():
        for start in range(0, len(encoded), batch_size):
            chunk = encoded[start:start + batch_size]
            width = max(len(ids) for ids in chunk)
            # Left padding puts every prompt's last token in the last column.
            ids = torch.tensor([[pad] * (width - len(s)) + s for s in chunk])
            mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in chunk])
            hidden = model(input_ids=ids.to(run.device), attention_mask=mask.to(run.device),
                           output_hidden_states=True).hidden_states
            out.append(torch.stack([hidden[layer][:, -p].float() for layer in layers
                                    for p in range(1, positions + 1)]))
    return torch.cat(out, dim=1), sum(len(ids) for ids in encoded)


def refusal_basis(harmful: Any, harmless: Any, n: int) -> Any:
    """(hidden, k) orthonormal basis of the mean differences (one per layer and position)
    over the first n prompts of each kind."""
    import torch

    diffs = harmful[:, :n].mean(dim=1) - harmless[:, :n].mean(dim=1)  # (k, hidden)
    if diffs.shape[0] >= diffs.shape[1]:
        raise CellError("config", f"{diffs.shape[0]} directions (layers x positions) would "
                        f"remove the whole {diffs.shape[1]}-wide residual stream",
                        hint="read fewer layers or positions")
    if bool((diffs.norm(dim=1) < 1e-6).any()):
        # e.g. layer 0 at a template token: the same embedding for every prompt
        raise CellError("config", "a chosen layer shows no difference between harmful and "
                        "harmless prompts at a chosen prompt position (the same template "
                        "token for every prompt), so it has no direction",
                        hint="choose a later layer (layer 0 is the token embedding itself)")
    q, _ = torch.linalg.qr(diffs.T)
    return q


def writers(model: Any) -> list[tuple[str, Any]]:
    """(name, module) of every module that writes to the residual stream."""
    found = [("embed_tokens", model.get_input_embeddings())]
    found += [(name, module) for name, module in model.named_modules()
              if name.endswith(WRITERS)]
    if len(found) == 1:
        raise CellError("config", f"refusal_ablation found no {' or '.join(WRITERS)} layers in "
                        f"{type(model).__name__}: it edits Llama-family decoders only",
                        hint="use a Llama-family model (Llama, Mistral, Qwen, SmolLM, Gemma)")
    return found


def ablate(weights: dict[str, tuple[Any, Any]], modules: list[tuple[str, Any]],
           basis: Any) -> None:
    """Set each writer to its original weight minus the basis' span of what it writes."""
    import torch

    with torch.no_grad():
        for name, module in modules:
            weight, bias = weights[name]
            q = basis.to(weight.dtype)
            if name == "embed_tokens":  # (vocab, hidden): rows are written to the stream
                module.weight.copy_(weight - (weight @ q) @ q.T)
            else:  # (hidden, in): columns are written to the stream
                module.weight.copy_(weight - q @ (q.T @ weight))
            if bias is not None:
                module.bias.copy_(bias - q @ (q.T @ bias))


@registry.attack("refusal_ablation", params=RefusalAblationParams, paper=ARDITI_2024,
                 cost="samples", tags=("weight-edit", "training-free", "white-box"),
                 trajectory="n_samples", check_model=check_model)
def refusal_ablation(run: AttackRun, p: RefusalAblationParams) -> None:
    """Project the harmful-minus-harmless activation direction out of the weights (Arditi 2024)."""
    started = time.perf_counter()
    harmful = [e.prompt for e in run.examples(p.dataset, p.n_samples, p.categories)]
    harmless = [e.prompt for e in run.examples(p.harmless_dataset, p.n_samples)]
    model = run.trainable_model(local=True)  # edited in place, restored after the cell
    num_layers = int(model.config.num_hidden_layers)
    check_model(p, "refusal_ablation", num_layers)
    layers = chosen_layers(p, num_layers)
    acts_h, tokens_h = read_activations(run, model, harmful, layers, p.positions,
                                        p.system_prompt, p.batch_size)
    acts_b, tokens_b = read_activations(run, model, harmless, layers, p.positions,
                                        p.system_prompt, p.batch_size)
    modules = writers(model)
    original = {name: (m.weight.detach().clone(),
                       m.bias.detach().clone() if getattr(m, "bias", None) is not None else None)
                for name, m in modules}
    n_params = sum(t.numel() for t in model.parameters())
    per_prompt = (tokens_h + tokens_b) / (2 * p.n_samples)
    norms = {}
    read_seconds = time.perf_counter() - started
    for n in run.checkpoints:
        if n == 0:  # no samples: the unmodified model
            if run.hand_back(model, Spend(), step=0):
                break
            continue
        edit_started = time.perf_counter()
        basis = refusal_basis(acts_h, acts_b, n)
        ablate(original, modules, basis)
        norms[n] = round(float((acts_h[:, :n].mean(1) - acts_b[:, :n].mean(1)).norm()), 4)
        tokens = round(2 * n * per_prompt)
        # What n samples cost the attacker: their share of the reading, and this edit.
        spend = Spend(samples=2 * n, tokens=tokens, flop=2.0 * n_params * tokens,
                      seconds=read_seconds * n / p.n_samples
                      + time.perf_counter() - edit_started)
        if run.hand_back(model, spend, step=n):
            break
    run.note(refusal_ablation={"layers": layers, "positions": p.positions,
                               "position": f"last {p.positions} prompt token(s)",
                               "writers": [name for name, _ in modules],
                               "harmful": len(harmful), "harmless": len(harmless),
                               "direction_norm": norms})
