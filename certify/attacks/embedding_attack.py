"""Embedding-space attack (Schwinn et al. 2024): a soft prompt trained towards affirmative answers.

Schwinn et al. ("Soft prompt threats: attacking safety alignment and unlearning in
open-source LLMs through the embedding space", https://arxiv.org/abs/2402.09063)
show that an attacker with the weights need not search over tokens: continuous
embeddings put next to a prompt, optimized by gradient descent so that the model starts
its answer affirmatively, break aligned models within a few steps. This recipe runs the
paper's *universal* variant by default: one soft prompt shared by every prompt, optimized
on the attack's training pairs and then put next to every evaluation prompt. With
``per_prompt: true`` it runs the paper's *individual* attack: one soft prompt per harm
evaluation prompt, optimized on that very prompt towards ``target`` (all of them in the
same batches), and put next to it alone at evaluation time.

The recipe, top to bottom:

1. draw ``n_samples`` (prompt, response) pairs with the cell's seed; each response is the
   affirmative target (``target_tokens`` keeps only its first tokens, e.g. "Sure, here
   is how to"). Per prompt: the harm evaluations' own prompts (as they ask them: prefix
   and system prompt), each with ``target``;
2. start ``n_tokens`` soft token embeddings from the embeddings of ``init`` (its tokens
   repeated), and put them after the chat-formatted prompt, right before the answer
   (``suffix``), or before the prompt (``prefix``);
3. train the soft prompt alone through the frozen model (``frozen_model()``, about 4·N
   FLOP per token), in batches of prompts, with the shared training loop: optimizer,
   schedule, clipping, seeded batches, evaluation at the cell's checkpoints and early
   stopping, as ``sft``;
4. at each checkpoint every evaluation generates through the soft prompt (greedy, from
   ``inputs_embeds``): the harm trajectory is judged like a fine-tuning trajectory.

The model's weights are never changed. Evaluations that do not generate through
``model.generate`` (lm-eval tasks) cannot see a soft prompt and are refused; per prompt,
so is a prompt that has no soft prompt of its own (an evaluation that does not measure
harm).

A sequence carries its soft tokens as negative ids: slot ``j`` of prompt ``i``'s soft
prompt is ``-(1 + i * n_tokens + j)``, so one batch holds many prompts' soft prompts and
the frozen model reads each from its own rows.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from certify import registry
from certify.attacks._common import FinetuneParams, fit_batches
from certify.attacks.contract import AttackRun
from certify.errors import CellError

SCHWINN_2024 = "https://arxiv.org/abs/2402.09063"


class EmbeddingAttackParams(FinetuneParams):
    """A universal soft prompt trained through the frozen model; the weights stay untouched."""

    n_tokens: int = Field(default=8, ge=1, le=1024)
    """Soft tokens (continuous embeddings) in the soft prompt."""
    position: Literal["suffix", "prefix"] = "suffix"
    """suffix: after the formatted prompt, right before the answer (the paper's adversarial
    suffix); prefix: before the formatted prompt."""
    init: str = Field(default="!", min_length=1)
    """Text whose token embeddings, repeated, start the soft prompt (GCG's "!" by default)."""
    target_tokens: int | None = Field(default=None, ge=1, le=4096)
    """Keep only the first tokens of each response as the target (the affirmative start);
    default: the whole response."""
    per_prompt: bool = False
    """One soft prompt per harm-evaluation prompt, trained on that prompt towards
    ``target`` (Schwinn et al.'s individual attack; ``dataset``, ``n_samples`` and
    ``target_tokens`` are not read). ``batch_size`` prompts are updated per step: set it to
    the number of evaluation prompts to update every soft prompt at every step. Gradient
    clipping (``grad_clip``) bounds the norm of all of them together."""
    target: str = Field(default="Sure, here is", min_length=1)
    """With ``per_prompt``: the affirmative answer start each soft prompt is trained to
    make the model say (no end of turn)."""
    learning_rate: float = Field(default=1e-2, gt=0, le=10)
    optimizer: Literal["adamw", "adam", "sgd"] = "adam"
    max_steps: int = Field(default=64, ge=1, le=10_000_000)


SLOT = -1
"""The id of the first soft token of the (first) soft prompt: ids below 0 are soft tokens
(slot ``j`` of soft prompt ``i`` is ``-(1 + i * n_tokens + j)``), never real tokens."""


def slot_ids(k: int, index: int = 0) -> list[int]:
    """The ``k`` ids that mark soft prompt ``index``'s tokens, in order."""
    return [-(1 + index * k + j) for j in range(k)]


class SoftPrompted:
    """A frozen causal LM that reads trained soft prompts where a sequence has slot ids.

    It answers what the training loop and the evaluations ask of a model: ``__call__``
    (a forward pass; training sequences carry their slots, see :func:`with_slots`),
    ``generate`` (puts the slots into left-padded prompts; returns the prompt ids followed
    by the new ones, as ``model.generate`` does), ``parameters`` (the soft prompts only),
    ``train`` and ``eval``. ``embeddings`` is one soft prompt ``(n_tokens, hidden)``, or
    one per prompt ``(prompts, n_tokens, hidden)`` with ``owners``: each prompt's token
    ids (as formatted, unpadded) → its soft prompt, which ``generate`` looks up.
    """

    def __init__(self, model: Any, embeddings: Any, position: str,
                 owners: dict[tuple[int, ...], int] | None = None) -> None:
        self.model, self.embeddings, self.position = model, embeddings, position
        self.owners = owners
        self.training = False

    @property
    def n_tokens(self) -> int:
        return int(self.embeddings.shape[-2])

    def parameters(self) -> list[Any]:
        return [self.embeddings]

    def train(self, mode: bool = True) -> SoftPrompted:
        self.training = mode  # the frozen model stays in eval mode: no dropout
        return self

    def eval(self) -> SoftPrompted:
        return self.train(False)

    def embed(self, ids: Any) -> Any:
        """Token embeddings, with each slot's soft token in its place."""
        slots = ids < 0
        embedded = self.model.get_input_embeddings()(ids.clamp(min=0)).clone()
        table = self.embeddings.reshape(-1, self.embeddings.shape[-1]).to(embedded.dtype)
        embedded[slots] = table[-ids[slots] - 1]
        return embedded

    def owner(self, prompt: Any, mask: Any) -> int:
        """The soft prompt of one left-padded prompt row (0 for a universal one)."""
        if self.owners is None:
            return 0
        key = tuple(int(t) for t in prompt[mask.bool()])
        if key not in self.owners:
            raise CellError("config", "the per-prompt embedding attack was asked a prompt it "
                            "trained no soft prompt for (it trains one per prompt of the "
                            "cell's harm evaluations)",
                            hint="evaluate the per-prompt attack with harm evaluations only, "
                                 "or use the universal soft prompt (per_prompt: false)")
        return self.owners[key]

    def __call__(self, input_ids: Any, attention_mask: Any, **kwargs: Any) -> Any:
        return self.model(inputs_embeds=self.embed(input_ids), attention_mask=attention_mask,
                          **kwargs)

    def generate(self, input_ids: Any, attention_mask: Any, **kwargs: Any) -> Any:
        import torch

        k = self.n_tokens
        slots = [torch.tensor(slot_ids(k, self.owner(r, m)), dtype=input_ids.dtype,
                              device=input_ids.device)
                 for r, m in zip(input_ids, attention_mask, strict=True)]
        ones = torch.ones(k, dtype=attention_mask.dtype, device=attention_mask.device)
        width = input_ids.shape[1]
        # Left padding: a suffix goes after every prompt's last token, a prefix before its
        # first real one.
        at = ([width] * len(input_ids) if self.position == "suffix" else
              [int(m.nonzero()[0]) for m in attention_mask])
        ids = torch.stack([torch.cat([r[:i], s, r[i:]]) for r, s, i in zip(input_ids, slots, at,
                                                                          strict=True)])
        mask = torch.stack([torch.cat([m[:i], ones, m[i:]]) for m, i in zip(attention_mask, at,
                                                                            strict=True)])
        with torch.no_grad():
            new = self.model.generate(inputs_embeds=self.embed(ids), attention_mask=mask,
                                      **kwargs)
        return torch.cat([input_ids, new.to(input_ids.device)], dim=1)


def answer_start(labels: list[int]) -> int:
    """Where the answer starts: the first position with a loss."""
    return next((i for i, label in enumerate(labels) if label != -100), len(labels))


def with_slots(encoded: list[tuple[list[int], list[int]]], k: int, position: str,
               per_prompt: bool = False) -> list[tuple[list[int], list[int]]]:
    """Training sequences with ``k`` slots where the answer starts (suffix) or at the start
    (prefix); no loss on them. ``per_prompt``: sequence ``i`` reads soft prompt ``i``."""
    out = []
    for index, (ids, labels) in enumerate(encoded):
        at = 0 if position == "prefix" else answer_start(labels)
        slots = slot_ids(k, index if per_prompt else 0)
        out.append((ids[:at] + slots + ids[at:], labels[:at] + [-100] * k + labels[at:]))
    return out


def targets(run: AttackRun, examples: list[Any], p: EmbeddingAttackParams) -> list[Any]:
    """The examples with each response cut to its first ``target_tokens`` tokens."""
    from certify.train import Example

    if p.target_tokens is None:
        return examples
    tok = run.tokenizer
    out = []
    for e in examples:
        ids = tok(e.response, add_special_tokens=False)["input_ids"][:p.target_tokens]
        out.append(Example(e.prompt, tok.decode(ids, skip_special_tokens=True), e.system))
    return out


def initial_embeddings(run: AttackRun, model: Any, p: EmbeddingAttackParams,
                       prompts: int | None = None) -> Any:
    """The soft prompt to train, ``(n_tokens, hidden)``, or ``(prompts, n_tokens, hidden)``."""
    import torch

    ids = run.tokenizer(p.init, add_special_tokens=False)["input_ids"]
    if not ids:
        raise CellError("config", f"init {p.init!r} has no tokens", hint="give a visible text")
    cycled = torch.tensor([ids[i % len(ids)] for i in range(p.n_tokens)], device=run.device)
    with torch.no_grad():
        start = model.get_input_embeddings()(cycled).detach().float().clone()
    if prompts is not None:
        start = start.repeat(prompts, 1, 1)
    return torch.nn.Parameter(start)


def evaluation_examples(run: AttackRun, p: EmbeddingAttackParams) -> list[Any]:
    """Each harm evaluation prompt as it is asked (prefix, system prompt), with ``target``:
    the individual attack's training pairs, one soft prompt each (duplicates once)."""
    from certify.train import Example

    out, seen = [], set()
    for eval_id, measures in run.measures.items():
        evaluator = run.evaluators[eval_id]
        rows, params = getattr(evaluator, "rows", None), getattr(evaluator, "params", None)
        if measures != "harm" or rows is None:
            continue
        prefix = getattr(params, "prompt_prefix", "") or ""
        system = getattr(params, "system_prompt", None)
        for row in rows:
            if (prefix + row.prompt, system) not in seen:
                seen.add((prefix + row.prompt, system))
                out.append(Example(prefix + row.prompt, p.target, system))
    if not out:
        raise CellError("config", "the per-prompt embedding attack found no harm evaluation "
                        "prompts to train a soft prompt for",
                        hint="evaluate it with a harm evaluation (harmfulness), or use the "
                             "universal soft prompt (per_prompt: false)")
    return out


def _require_generating_evals(run: AttackRun) -> None:
    blind = [e for e, ev in run.evaluators.items() if getattr(ev, "plugin", "") in
             ("lm_eval", "knowledge")]
    if blind:
        raise CellError("config", f"the embedding attack's evaluations {', '.join(blind)} run "
                        "through lm-eval, which cannot see a soft prompt",
                        hint="evaluate the embedding attack with generating evaluations "
                             "(harmfulness, benign_accuracy, ...)")


@registry.attack("embedding_attack", params=EmbeddingAttackParams, paper=SCHWINN_2024,
                 tags=("soft-prompt", "embedding-space", "white-box"),
                 blind_measures=("capability", "knowledge"))
def embedding_attack(run: AttackRun, p: EmbeddingAttackParams) -> None:
    """Optimize a soft prompt in embedding space towards affirmative answers (Schwinn 2024)."""
    from certify import train

    _require_generating_evals(run)
    if p.per_prompt:
        examples = evaluation_examples(run, p)
    else:
        examples = targets(run, run.examples(p.dataset, p.n_samples, p.categories,
                                             system=p.system_prompt), p)
    model = run.frozen_model()
    encoded = train.encode(run.tokenizer, examples, p.max_length)
    if p.target_tokens is not None or p.per_prompt:  # an affirmative start: no EOS
        eos = run.tokenizer.eos_token_id
        encoded = [(ids[:-1], labels[:-1]) if ids and ids[-1] == eos else (ids, labels)
                   for ids, labels in encoded]
    owners = ({tuple(ids[:answer_start(labels)]): i
               for i, (ids, labels) in enumerate(encoded)} if p.per_prompt else None)
    soft = SoftPrompted(model, initial_embeddings(run, model, p, len(encoded) if owners else None),
                        p.position, owners)
    run.note(embedding_attack={"n_tokens": p.n_tokens, "position": p.position,
                               "init": p.init, "target_tokens": p.target_tokens,
                               "examples": len(examples), "per_prompt": p.per_prompt,
                               **({"target": p.target, "soft_prompts": len(encoded)}
                                  if p.per_prompt else {}),
                               "hidden": int(soft.embeddings.shape[-1])})
    encoded = with_slots(encoded, p.n_tokens, p.position, p.per_prompt)
    batches = train.batches(encoded, p.batch_size, run.seed, run.tokenizer.pad_token_id)
    fit_batches(run, soft, batches, p)
