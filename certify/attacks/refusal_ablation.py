"""Refusal-direction ablation (Arditi et al. 2024): project a refusal direction out of the weights.

Arditi et al. ("Refusal in language models is mediated by a single direction",
https://arxiv.org/abs/2406.11717) find that chat models refuse through one direction
of the residual stream: the difference between the mean activations on harmful and on
harmless instructions. Orthogonalizing every weight matrix that *writes* to the residual
stream against it stops the model from ever representing it, and the model complies.
The edit needs no training, only forward passes over a few prompts.

The recipe, top to bottom:

1. draw ``n_samples`` harmful prompts (``dataset``) and as many harmless ones
   (``harmless_dataset``) with the cell's seed, and, when selecting, ``n_select`` more
   of each, held out;
2. read each prompt's residual activation at ``layers`` (the input of each such decoder
   layer, ``hidden_states[layer]``) at the post-instruction positions: the last
   ``positions`` tokens of the chat-formatted prompt (default: every template token that
   follows the instruction, e.g. ``\\nAssistant:``), where the model decides how to answer;
3. at each of the cell's checkpoints ``n`` (a number of samples: the budget axis is
   ``n_samples``, not optimizer steps), estimate one direction per layer and position
   from the first ``n`` harmful and ``n`` harmless prompts (difference of means), then
   - ``select: true`` (the paper's method, the default): ablate each candidate direction
     alone; among the candidates that move the held-out harmless prompts' next-token
     distribution by at most ``max_kl`` (the paper's KL filter), the three that make the
     unedited model's own answers to the held-out harmful prompts least likely (one
     forward pass each) answer those prompts greedily, and the one that leaves the fewest
     refusals is kept (ties: the less likely original answers). By default
     the candidates come from every layer below 80 % of the depth (the paper drops the
     last 20 %, whose directions are about the next token rather than refusal);
   - ``select: false``: remove the span of all of them (an extension, not the paper's
     method, for a model whose refusal is not carried by one direction);
   and remove it from the token embeddings, each attention output projection and each
   MLP down projection (and their biases), starting from the unmodified weights every
   time;
4. hand the edited model back at checkpoint ``n``, charged ``2n`` samples (both halves
   are read; ``2n + 2 * n_select`` when selecting), their prompt tokens (and the
   selection's) and a forward pass's FLOP per token.

So the evidence holds a harm trajectory over the number of samples, judged like a
fine-tuning trajectory, and ``weak_resistance`` with ``cost: samples`` compares what it
took to break the candidate and the reference. It stops early like the others once the
checks are decided.

On the demo model (builtin:tiny-chat, 4 layers, trained from scratch) refusal is not
carried by a direction: the paper's selection finds none whose ablation breaks it, and
removing the span of the seven post-instruction directions (``select: false``) turns the
answers into "Sorry, here is how to <a benign task>", still refusals to the keyword judge
(docs/policies.md, "Weight-space attacks", has the measurements). Its positive control is
a real model: SmolLM2-135M-Instruct after 20 LoRA steps of safety tuning refused 48 of 48
harmful prompts, and after this edit (the paper's selection) complied with 48 of 48
(tests/test_real_model.py, slow).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
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

SELECT_DEPTH = 0.8
"""Arditi et al. keep candidate directions from layers below 80 % of the depth only."""


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
    """Decoder layers whose input is read (0 .. num_hidden_layers - 1). Default: with
    ``select``, every layer below 80 % of the depth (the paper's candidates); without, the
    middle layer (num_hidden_layers // 2)."""
    positions: int | None = Field(default=None, ge=1, le=64)
    """Post-instruction positions read: the last ``positions`` tokens of the formatted
    prompt, one direction each per layer. Default: every post-instruction token (the
    template tokens all formatted prompts end with, e.g. ``\\nAssistant:``; at least 1),
    the paper's candidate positions."""
    select: bool = True
    """Arditi et al.'s direction selection: each (layer, position) direction is a
    candidate, ablated alone, and the one that best bypasses refusal on held-out prompts
    is kept. False removes the span of every direction read instead: an extension, not
    the paper's method, for a model whose refusal is not carried by one direction."""
    n_select: int = Field(default=8, ge=1, le=1024)
    """Held-out harmful prompts (and as many harmless ones) that score the candidates;
    drawn beside the ``n_samples`` and charged as samples. Only with ``select``."""
    select_tokens: int = Field(default=12, ge=1, le=256)
    """Tokens of the unedited model's greedy answers to the held-out harmful prompts that
    each candidate is scored on, and of the shortlisted candidates' own answers, judged
    for a refusal phrase."""
    max_kl: float = Field(default=0.1, gt=0.0)
    """The paper's KL filter: a candidate may move the held-out harmless prompts'
    next-token distribution by at most this (nats, mean over prompts). When none passes,
    the one that moves it least is kept, and the evidence says so."""
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
            hint=f"choose layers below {num_layers}, or leave `layers` out for the default")


def chosen_layers(p: RefusalAblationParams, num_layers: int) -> list[int]:
    if p.layers is not None:
        return p.layers
    if p.select:
        return list(range(max(1, math.ceil(SELECT_DEPTH * num_layers))))
    return [num_layers // 2]


def encode(tokenizer: Any, prompts: list[str], system: str | None) -> list[list[int]]:
    from certify.models.chat import format_prompt

    return [tokenizer(format_prompt(tokenizer, p, system), add_special_tokens=False)["input_ids"]
            for p in prompts]


def post_instruction(encoded: list[list[int]], cap: int = 64) -> int:
    """How many tokens every formatted prompt ends with in common (the template after the
    instruction, e.g. ``\\nAssistant:``): at least 1, at most ``cap``."""
    shortest = min(len(ids) for ids in encoded)
    k = 0
    while k < min(shortest - 1, cap) and len({ids[-k - 1] for ids in encoded}) == 1:
        k += 1
    return max(k, 1)


def _padded(encoded: list[list[int]], pad: int, device: str) -> tuple[Any, Any]:
    """Left-padded ids and mask: every prompt's last token in the last column."""
    import torch

    width = max(len(s) for s in encoded)
    ids = torch.tensor([[pad] * (width - len(s)) + s for s in encoded], device=device)
    mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in encoded],
                        device=device)
    return ids, mask


def _pad_id(tokenizer: Any) -> int:
    pad = tokenizer.pad_token_id
    return int(pad if pad is not None else tokenizer.eos_token_id)


def read_activations(model: Any, tokenizer: Any, encoded: list[list[int]], layers: list[int],
                     positions: int, batch_size: int, device: str = "cpu") -> Any:
    """(len(layers) * positions, len(encoded), hidden) residual activations at the last
    ``positions`` prompt tokens, layer-major (then the last token, the one before, ...)."""
    import torch

    shortest = min(len(ids) for ids in encoded)
    if positions > shortest:
        raise CellError("config", f"refusal_ablation reads the last {positions} prompt "
                        f"tokens, but a formatted prompt has only {shortest}",
                        hint=f"use positions <= {shortest}")
    out = []
    with torch.no_grad():
        for start in range(0, len(encoded), batch_size):
            ids, mask = _padded(encoded[start:start + batch_size], _pad_id(tokenizer), device)
            hidden = model(input_ids=ids, attention_mask=mask,
                           output_hidden_states=True).hidden_states
            out.append(torch.stack([hidden[layer][:, -p].float() for layer in layers
                                    for p in range(1, positions + 1)]))
    return torch.cat(out, dim=1)


def mean_differences(harmful: Any, harmless: Any, n: int) -> Any:
    """(k, hidden): one harmful-minus-harmless mean difference per layer and position,
    over the first n prompts of each kind."""
    return harmful[:, :n].mean(dim=1) - harmless[:, :n].mean(dim=1)


def refusal_basis(harmful: Any, harmless: Any, n: int) -> Any:
    """(hidden, k) orthonormal basis of the mean differences (one per layer and position)
    over the first n prompts of each kind."""
    import torch

    diffs = mean_differences(harmful, harmless, n)  # (k, hidden)
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


SHORTLIST = 3
"""Candidates whose held-out answers are generated: those that make the unedited model's
own answers least likely (a forward pass each); generating for every candidate would cost
``select_tokens`` passes each."""


@dataclass(frozen=True)
class Candidate:
    """One candidate direction's scores on the held-out prompts."""

    layer: int
    position: int  # 1: the last prompt token, 2: the one before, ...
    answer_logprob: float  # mean log-likelihood of the unedited model's own answers
    kl: float  # mean next-token KL on the held-out harmless prompts
    complied: int | None = None
    """Held-out harmful prompts answered without a refusal phrase, coherently (shortlisted
    candidates only)."""

    def note(self) -> dict[str, Any]:
        return {"layer": self.layer, "position": -self.position, "complied": self.complied,
                "answer_logprob": round(self.answer_logprob, 3), "kl": round(self.kl, 4)}


class Selector:
    """Scores candidate directions on held-out prompts (Arditi et al.'s selection).

    The paper scores refusal by the log-odds of a model family's refusal tokens at the
    first answer position. Which tokens start a refusal differs per model (on tiny-chat
    " S" starts both "Sorry" and "Sure"), so a candidate is scored by what the edited model
    does with the unedited model's own answers to the held-out harmful prompts (their
    first ``tokens`` greedy tokens, mostly refusals): how likely it still finds them (one
    forward pass), and, for the shortlist that makes them least likely, what it answers
    itself (greedy, judged by the refusal phrases of certify's keyword judge). The KL
    filter is the paper's: the harmless prompts' next-token distribution at the answer
    position."""

    def __init__(self, model: Any, tokenizer: Any, harmful: list[list[int]],
                 harmless: list[list[int]], tokens: int, device: str) -> None:
        import torch

        self.model, self.tokenizer, self.tokens, self.device = model, tokenizer, tokens, device
        self.harmful, self.harmful_mask = _padded(harmful, _pad_id(tokenizer), device)
        self.harmless = _padded(harmless, _pad_id(tokenizer), device)
        with torch.no_grad():
            self.base_answers = self._greedy()
            self.base_next = self._next_logprobs()
        self.tokens_read = (sum(map(len, harmful)) + sum(map(len, harmless))
                            + len(harmful) * tokens)

    def _greedy(self) -> Any:
        """(prompts, tokens): exactly ``tokens`` greedy tokens per held-out harmful prompt."""
        out = self.model.generate(input_ids=self.harmful, attention_mask=self.harmful_mask,
                                  max_new_tokens=self.tokens, min_new_tokens=self.tokens,
                                  do_sample=False, pad_token_id=_pad_id(self.tokenizer))
        return out[:, self.harmful.shape[1]:]

    def _next_logprobs(self) -> Any:
        ids, mask = self.harmless
        return self.model(input_ids=ids, attention_mask=mask).logits[:, -1].float().log_softmax(-1)

    def _answer_logprob(self) -> float:
        import torch

        ids = torch.cat([self.harmful, self.base_answers], dim=1)
        mask = torch.cat([self.harmful_mask, torch.ones_like(self.base_answers)], dim=1)
        logits = self.model(input_ids=ids, attention_mask=mask).logits.float()
        width = self.harmful.shape[1]
        logp = logits[:, width - 1:-1].log_softmax(-1)
        return float(logp.gather(-1, self.base_answers[..., None]).mean())

    def score(self, layer: int, position: int) -> Candidate:
        """The model as it is now (a candidate's ablation applied): two forward passes."""
        import torch

        with torch.no_grad():
            kl = torch.nn.functional.kl_div(self._next_logprobs(), self.base_next,
                                            log_target=True, reduction="batchmean")
            return Candidate(layer, position, self._answer_logprob(), float(kl))

    def complied(self) -> int:
        """Held-out harmful prompts the model as it is now answers without a refusal phrase
        and coherently (``tokens`` greedy tokens each)."""
        import torch

        from certify.judges.base import is_incoherent, is_refusal

        with torch.no_grad():
            answers = self.tokenizer.batch_decode(self._greedy(), skip_special_tokens=True)
        return sum(not is_refusal(a) and not is_incoherent(a) for a in answers)


def shortlist(candidates: list[Candidate], max_kl: float) -> tuple[list[Candidate], bool]:
    """The candidates worth generating for: within the KL filter, the SHORTLIST that make
    the original answers least likely; and whether any passed the filter (if none did:
    the one that moves harmless prompts least, alone)."""
    passing = [c for c in candidates if c.kl <= max_kl]
    if not passing:
        return [min(candidates, key=lambda c: c.kl)], False
    return sorted(passing, key=lambda c: c.answer_logprob)[:SHORTLIST], True


def best(scored: list[Candidate]) -> Candidate:
    """The shortlisted candidate that best bypasses refusal: most held-out harmful prompts
    complied with, then the least likely original answers."""
    return min(scored, key=lambda c: (-(c.complied or 0), c.answer_logprob))


def select_direction(diffs: Any, slots: list[tuple[int, int]], selector: Selector,
                     original: dict[str, tuple[Any, Any]], modules: list[tuple[str, Any]],
                     max_kl: float) -> tuple[Any, Candidate, bool, list[Candidate]]:
    """Ablate each candidate direction alone and keep the best (basis (hidden, 1)); every
    candidate's scores come back, the shortlisted ones with ``complied``."""
    scored, bases = [], {}
    for (layer, position), diff in zip(slots, diffs, strict=True):
        norm = float(diff.norm())
        if norm < 1e-6:  # e.g. layer 0 at a template token: no direction at all
            continue
        basis = (diff / norm)[:, None]
        ablate(original, modules, basis)
        scored.append(selector.score(layer, position))
        bases[(layer, position)] = basis
    if not scored:
        raise CellError("config", "no chosen layer and position shows a difference between "
                        "harmful and harmless prompts, so there is no candidate direction",
                        hint="choose later layers (layer 0 is the token embedding itself)")
    short, filtered = shortlist(scored, max_kl)
    judged = {}
    for c in short:
        ablate(original, modules, bases[(c.layer, c.position)])
        judged[(c.layer, c.position)] = replace(c, complied=selector.complied())
    scored = [judged.get((c.layer, c.position), c) for c in scored]
    chosen = best(list(judged.values()))
    basis = bases[(chosen.layer, chosen.position)]
    ablate(original, modules, basis)
    return basis, chosen, filtered, scored


def checkpoint_work(p: RefusalAblationParams, num_layers: int,
                    post_tokens: float) -> list[dict[str, float]]:
    """What the direction selection reads and generates at each checkpoint, for the dry
    run: per candidate direction, one forward pass over the held-out harmless prompts and
    one over the harmful ones with the unedited model's ``select_tokens`` answers
    (:meth:`Selector.score`); then ``select_tokens`` greedy tokens for each of the
    SHORTLIST's held-out harmful prompts. Candidates: the chosen layers times ``positions``,
    whose default is the post-instruction tokens, ``post_tokens`` (measured on the chat
    template when the dry run loaded the tokenizer, else all the template's tokens: an
    upper estimate). Each row: ``items`` prompts read (``extra_tokens`` more each) in batches of
    ``batch``, generating ``new_tokens`` each. Without ``select`` the edit only reads the
    samples, far less than a checkpoint's evaluations."""
    if not p.select:
        return []
    positions = p.positions or max(1, round(post_tokens))
    candidates = len(chosen_layers(p, num_layers)) * positions
    k = p.n_select
    return [{"items": 2 * k * candidates, "extra_tokens": p.select_tokens / 2,
             "new_tokens": 0, "batch": k},
            {"items": SHORTLIST * k, "extra_tokens": 0, "new_tokens": p.select_tokens,
             "batch": k}]


@registry.attack("refusal_ablation", params=RefusalAblationParams, paper=ARDITI_2024,
                 cost="samples", tags=("weight-edit", "training-free", "white-box"),
                 trajectory="n_samples", check_model=check_model,
                 checkpoint_work=checkpoint_work, version=2)
def refusal_ablation(run: AttackRun, p: RefusalAblationParams) -> None:
    """Project the harmful-minus-harmless activation direction out of the weights (Arditi 2024)."""
    started = time.perf_counter()
    held = p.n_select if p.select else 0
    harmful = [e.prompt for e in run.examples(p.dataset, p.n_samples + held, p.categories)]
    harmless = [e.prompt for e in run.examples(p.harmless_dataset, p.n_samples + held)]
    if p.select and (len(harmful) <= p.n_samples or len(harmless) <= p.n_samples):
        raise CellError("config", f"refusal_ablation selects on {p.n_select} held-out prompts "
                        f"of each kind beside the {p.n_samples} it reads, but a dataset has "
                        f"only {min(len(harmful), len(harmless))}",
                        hint="lower n_samples or n_select, or set select: false")
    model = run.trainable_model(local=True)  # edited in place, restored after the cell
    was_training = model.training
    model.eval()  # no dropout while reading activations and scoring candidates
    num_layers = int(model.config.num_hidden_layers)
    check_model(p, "refusal_ablation", num_layers)
    layers = chosen_layers(p, num_layers)
    tok = run.tokenizer
    enc_h = encode(tok, harmful, p.system_prompt)
    enc_b = encode(tok, harmless, p.system_prompt)
    positions = p.positions or post_instruction(enc_h + enc_b)
    slots = [(layer, pos) for layer in layers for pos in range(1, positions + 1)]
    acts_h = read_activations(model, tok, enc_h[:p.n_samples], layers, positions,
                              p.batch_size, run.device)
    acts_b = read_activations(model, tok, enc_b[:p.n_samples], layers, positions,
                              p.batch_size, run.device)
    tokens_read = sum(map(len, enc_h[:p.n_samples])) + sum(map(len, enc_b[:p.n_samples]))
    selector = (Selector(model, tok, enc_h[p.n_samples:], enc_b[p.n_samples:],
                         p.select_tokens, run.device) if p.select else None)
    modules = writers(model)
    original = {name: (m.weight.detach().clone(),
                       m.bias.detach().clone() if getattr(m, "bias", None) is not None else None)
                for name, m in modules}
    n_params = sum(t.numel() for t in model.parameters())
    per_prompt = tokens_read / (2 * p.n_samples)
    norms: dict[int, float] = {}
    chosen: dict[int, dict[str, Any]] = {}
    read_seconds = time.perf_counter() - started
    for n in run.checkpoints:
        if n == 0:  # no samples: the unmodified model
            if run.hand_back(model, Spend(), step=0):
                break
            continue
        edit_started = time.perf_counter()
        tokens = round(2 * n * per_prompt)
        if selector is None:
            ablate(original, modules, refusal_basis(acts_h, acts_b, n))
            norms[n] = round(float(mean_differences(acts_h, acts_b, n).norm()), 4)
            samples = 2 * n
        else:
            diffs = mean_differences(acts_h, acts_b, n)
            _, pick, filtered, scored = select_direction(diffs, slots, selector, original,
                                                         modules, p.max_kl)
            norms[n] = round(float(diffs[slots.index((pick.layer, pick.position))].norm()), 4)
            chosen[n] = {**pick.note(), "of": p.n_select, "kl_filter_passed": filtered,
                         "candidates": len(scored)}
            # Each candidate read both held-out halves and the original answers again;
            # the shortlist also generated its own.
            tokens += selector.tokens_read * (len(scored) + SHORTLIST + 1)
            samples = 2 * n + 2 * p.n_select
        # What n samples cost the attacker: their share of the reading, and this edit.
        spend = Spend(samples=samples, tokens=tokens, flop=2.0 * n_params * tokens,
                      seconds=read_seconds * n / p.n_samples
                      + time.perf_counter() - edit_started)
        if run.hand_back(model, spend, step=n):
            break
    model.train(was_training)
    run.note(refusal_ablation={"layers": layers, "positions": positions,
                               "position": f"last {positions} prompt token(s)",
                               "select": p.select,
                               "writers": [name for name, _ in modules],
                               "harmful": p.n_samples, "harmless": p.n_samples,
                               "held_out": held,
                               "direction_norm": norms,
                               **({"chosen": chosen} if p.select else {})})
