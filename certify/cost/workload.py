"""What a plan asks of the hardware: steps, tokens, FLOP and memory per cell. Torch-free.

Training FLOP follow the usual transformer estimate (Kaplan et al. 2020): about
6·N FLOP per trained token for full fine-tuning (forward + backward through every
weight) and about 4·N for LoRA (the frozen weights need activation gradients but
no weight gradients) -- the same factors certify records in the evidence. A token
generated or read during evaluation costs about 2·N (one forward pass). Tokens per
example come from the dataset when it is a local or bundled file (counted with the
model's tokenizer when one is on disk, else at 4 characters per token); datasets
named on the Hugging Face hub are not read by a dry run and use stated defaults.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from certify import registry
from certify.cost.shape import DTYPE_BYTES, ModelShape
from certify.plan import CellSpec
from certify.policy.schema import Policy

CHARS_PER_TOKEN = 4.0
TEMPLATE_TOKENS = 8
"""Chat-template tokens around each prompt/response pair (role markers, BOS/EOS)."""
ASSUMED_PROMPT_TOKENS = 64
ASSUMED_RESPONSE_TOKENS = 192
ASSUMED_EVAL_ITEMS = 500
FLOP_FACTOR = {"full": 6, "lora": 4, "eval": 0}
OPTIMIZER_STATES = {"adamw": 2, "adam": 2, "sgd": 1}
ACTIVATION_ELEMENTS = 17
"""Activation elements kept per token, hidden unit and layer for the backward pass
(Korthikanti et al. 2022: ~34 bytes in 16-bit, without attention-score storage)."""


@dataclass(frozen=True)
class DataStats:
    rows: int | None
    prompt_tokens: float
    response_tokens: float
    measured: bool
    label: str
    lengths: tuple[int, ...] = ()
    """Tokens of each example (prompt + response), for the padding of a batch."""

    def padded(self, batch: int) -> float:
        """Mean tokens per example once a batch is padded to its longest example.

        certify pads each training batch to its longest row, and the evidence counts the
        padded tokens (they cost compute). Estimated over 64 seeded random batches; with
        no lengths known, no padding is assumed.
        """
        mean = self.prompt_tokens + self.response_tokens
        if len(self.lengths) < 2 or batch < 2:
            return mean
        import random

        rng = random.Random(0)
        draws = [max(rng.sample(self.lengths, min(batch, len(self.lengths))))
                 for _ in range(64)]
        return max(mean, sum(draws) / len(draws))


class TokenCounter:
    """Counts tokens with the model's tokenizer.json when present, else by characters.

    ``template_tokens`` is what the chat template adds around one prompt/response pair;
    certify.cost.calibrate.ModelTokens counts both with the loaded model's own tokenizer
    and template instead (a GGUF file carries no tokenizer.json, and SmolLM2's template
    adds a 30-token system prompt: 4 characters per token and 8 template tokens counted
    its training examples at about half their real length)."""

    template_tokens: float = TEMPLATE_TOKENS
    post_instruction_tokens: int | None = None
    """Tokens every formatted prompt ends with after the instruction (``\nAssistant:``),
    when the chat template was measured (ModelTokens); None: not known."""

    def __init__(self, shape: ModelShape) -> None:
        self.tokenizer: Any = None
        self.method = f"{CHARS_PER_TOKEN:g} characters per token"
        if shape.tokenizer is not None:
            try:
                from tokenizers import Tokenizer

                self.tokenizer = Tokenizer.from_file(str(shape.tokenizer))
                self.method = f"the model's tokenizer ({shape.tokenizer.name})"
            except Exception:  # an unreadable tokenizer only costs accuracy
                self.tokenizer = None

    def counts(self, texts: list[str]) -> list[int]:
        """Tokens of each of the first 256 texts."""
        sample = texts[:256]
        if self.tokenizer is not None:
            return [len(e.ids) for e in self.tokenizer.encode_batch(sample,
                                                                    add_special_tokens=False)]
        return [math.ceil(len(t) / CHARS_PER_TOKEN) for t in sample]

    def mean(self, texts: list[str]) -> float:
        counts = self.counts(texts)
        return sum(counts) / len(counts) if counts else 0.0


class DataEstimator:
    """Dataset sizes and lengths, read from bundled or local files; assumed for hub datasets."""

    def __init__(self, counter: TokenCounter) -> None:
        self.counter = counter
        self.cache: dict[str, DataStats] = {}
        self.notes: list[str] = []

    def stats(self, ref: Any) -> DataStats:
        from certify.data.load import HF_PREFIX, DatasetRef, load_dataset
        from certify.errors import DataError

        ref = ref if isinstance(ref, DatasetRef) else DatasetRef.model_validate(ref)
        if ref.label in self.cache:
            return self.cache[ref.label]
        stats = DataStats(None, ASSUMED_PROMPT_TOKENS, ASSUMED_RESPONSE_TOKENS, False, ref.label)
        if not ref.source.startswith(HF_PREFIX):
            try:
                rows = load_dataset(ref).rows
                prompts = self.counter.counts([r.prompt for r in rows])
                responses = self.counter.counts([r.response or "" for r in rows])
                stats = DataStats(len(rows), sum(prompts) / max(len(prompts), 1),
                                  sum(responses) / max(len(responses), 1), True, ref.label,
                                  tuple(p + r for p, r in zip(prompts, responses,
                                                              strict=True)))
            except DataError as e:
                self.notes.append(f"dataset {ref.label} could not be read ({e.message}); "
                                  "its size was assumed, and the audit itself would stop on it")
        self.cache[ref.label] = stats
        return stats


@dataclass(frozen=True)
class EvalCost:
    items: int
    prompt_tokens: float
    new_tokens: int
    batch: int
    measured: bool
    requests: int | None = None
    """Forward passes over a prompt: one per choice for multiple choice; default items."""
    kind: str = "generate"
    """generate, lm_eval (which also sets up its task manager and datasets each time), or
    edit (an attack's own passes to make a weight edit: no samples are stored)."""
    template_tokens: float = TEMPLATE_TOKENS
    """Chat-template tokens around each prompt (TokenCounter.template_tokens)."""
    eval_id: str = ""
    answer_steps: float | None = None
    """Decoding steps one batch is expected to run when the model ends its answers at EOS
    (generation stops when the batch's longest answer ends): measured on the model at
    preview time (certify.cost.calibrate) for its evaluations before training. None:
    costed to max_new_tokens, an upper bound (and what checkpoints after training get:
    ``after_training``)."""

    @property
    def steps_per_batch(self) -> float:
        if self.answer_steps is None:
            return float(self.new_tokens)
        return min(float(self.new_tokens), self.answer_steps)

    def flop(self, n_active: int) -> float:
        return 2.0 * n_active * (self.forward_tokens + self.generated)

    @property
    def forward_tokens(self) -> float:
        """Tokens read in parallel (prompts before generation; lm-eval's scored requests)."""
        return (self.items if self.requests is None else self.requests) * (
            self.prompt_tokens + self.template_tokens)

    @property
    def generated(self) -> float:
        """Rows x decoding steps: every row of a batch is decoded until the batch stops."""
        return self.items * self.steps_per_batch

    @property
    def decode_steps(self) -> float:
        """Sequential forward passes: one per generated token per batch."""
        return math.ceil(self.items / self.batch) * self.steps_per_batch


def _lm_eval_cost(params: Any) -> EvalCost | None:
    """A capability evaluation whose tasks a provider ships: counted, not assumed."""
    from certify.cost.tasks import task_size

    sizes = [task_size(t) for t in params.tasks]
    if not sizes or any(s is None for s in sizes):
        return None
    known = [s for s in sizes if s is not None]
    limit = getattr(params, "limit", None)
    docs = sum(min(s.documents, limit) if limit else s.documents for s in known)
    requests = sum(round(s.requests * (min(s.documents, limit) / s.documents if limit else 1))
                   for s in known)
    chars = sum(s.characters * s.requests for s in known) / max(sum(s.requests
                                                                    for s in known), 1)
    tokens = chars / CHARS_PER_TOKEN  # the task's tokenizer is not at hand: characters
    return EvalCost(items=docs, prompt_tokens=tokens, new_tokens=0,
                    batch=int(getattr(params, "batch_size", 32) or 32), measured=True,
                    requests=requests, kind="lm_eval")


def _leaf_tasks(params: Any) -> int:
    """How many tasks lm-eval runs for the named ones: a group (``mmlu``: 57 subjects) or a
    tag counts each member, and ``limit`` applies to each. Counted as one per name when
    lm-eval cannot place them (the dry run has refused unknown names already)."""
    try:
        from certify.evals.capability import find_tasks, task_leaves

        manager, missing = find_tasks(list(params.tasks), list(params.include_paths))
    except Exception:  # lm-eval absent or unreadable: the names as they stand
        return len(params.tasks)
    return sum(1 if task in missing else max(1, len(dict(task_leaves(manager, task))))
               for task in params.tasks)


def eval_cost(policy: Policy, eval_id: str, data: DataEstimator) -> EvalCost:
    entry = policy.evaluations[eval_id]
    params = registry.get("eval", entry.eval).params.model_validate(entry.params)
    if getattr(params, "tasks", None):
        counted = _lm_eval_cost(params)
        if counted is not None:
            return replace(counted, eval_id=eval_id)
    ref = getattr(params, "dataset", None)
    stats = data.stats(ref) if ref is not None else None
    limit = getattr(params, "n", None) or getattr(params, "limit", None)
    tasks = _leaf_tasks(params) if getattr(params, "tasks", None) else 1
    rows = stats.rows if stats and stats.rows is not None else None
    items = min(limit, rows) if limit and rows else (limit or rows or ASSUMED_EVAL_ITEMS)
    return EvalCost(items=int(items) * tasks,
                    prompt_tokens=stats.prompt_tokens if stats else ASSUMED_PROMPT_TOKENS,
                    new_tokens=int(getattr(params, "max_new_tokens", 0) or 0),
                    batch=int(getattr(params, "batch_size", 64) or 64),
                    measured=bool(stats and stats.measured and (limit or rows)),
                    kind="lm_eval" if getattr(params, "tasks", None) else "generate",
                    eval_id=eval_id, template_tokens=data.counter.template_tokens)


@dataclass
class CellCost:
    cell_id: str
    attack_id: str
    role: str
    technique: str
    mode: str
    """full | lora | eval: how the weights are trained (sets FLOP and memory)."""
    steps: int
    batch: int
    seq_tokens: float
    optimizer: str
    evaluations: int
    train_tokens: float
    train_flop: float
    eval_flop: float
    generated_tokens: float
    decode_steps: float
    assumed: list[str] = field(default_factory=list)
    seed: int = 0
    max_steps: int = 0
    """Steps of one training run (``steps`` counts every trial of a search)."""
    eval_runs: list[tuple[int, EvalCost]] = field(default_factory=list)
    """Each evaluation with the step it runs at, so the cell can be cut at any step."""
    early_stop: bool = False
    """The cell may end at a checkpoint once its outcome is decided."""
    n_active: int = 0
    layers: int = 0
    n_params: int = 0

    def until(self, step: int) -> CellCost:
        """The same cell stopped after ``step`` (early stopping): training and the
        evaluations up to that step."""
        if self.mode == "eval" or step >= self.max_steps:
            return self
        share = max(0, step) / self.max_steps
        runs = [(s, e) for s, e in self.eval_runs if s <= step]
        return replace(self, steps=round(self.steps * share),
                       train_tokens=self.train_tokens * share,
                       train_flop=self.train_flop * share, evaluations=len(runs),
                       eval_flop=sum(e.flop(self.n_active) for _, e in runs),
                       generated_tokens=sum(e.generated for _, e in runs),
                       decode_steps=sum(e.decode_steps for _, e in runs), eval_runs=runs,
                       max_steps=step)


def training_mode(spec: CellSpec) -> str:
    tags = registry.get("attack", spec.technique).tags
    # A training-free weight edit (refusal_ablation) reads its samples once, forward only:
    # far less than the evaluations at its checkpoints, which are costed as for any cell,
    # and the work it does at each checkpoint to find its edit (refusal_ablation's direction
    # selection) is costed by the plug-in's own ``checkpoint_work`` (edit_runs).
    if spec.max_steps <= 0 or "training-free" in tags:
        return "eval"
    # LoRA and a soft prompt both train through frozen weights: ~4·N FLOP per token and
    # no weight gradients or optimizer states.
    if "lora" in tags or "soft-prompt" in tags:
        return "lora"
    # lora_rank 0 means every weight; a search that may pick rank 0 is costed as full.
    ranks = searched(spec.params, "lora_rank")
    return "lora" if ranks and 0 not in ranks else "full"


def kind_of(technique: str, mode: str) -> str:
    """What a cell does, in the preview's words; ``mode`` is how it is costed. A soft
    prompt trains through frozen weights and is costed as LoRA is, but it is no LoRA; a
    training-free weight edit is costed as its evaluations."""
    tags = registry.get("attack", technique).tags if technique in registry.names("attack") else ()
    if "soft-prompt" in tags:
        return "soft prompt"
    if "training-free" in tags:
        return "weight edit"
    return mode


def searched(params: dict[str, Any], knob: str) -> list[Any]:
    """The values a knob takes in a cell: a search's space (a range by its bounds) or the
    cell's one value."""
    axis = (params.get("space") or {}).get(knob)
    if isinstance(axis, dict):
        return [axis.get("low"), axis.get("high")]
    if isinstance(axis, list):
        return [v for v in axis if v is not None]
    return [params[knob]] if params.get(knob) is not None else []


def trials(spec: CellSpec) -> int:
    """Training runs in one cell: a search trains each of its trials to max_steps."""
    n = spec.params.get("n_trials", 1)
    return n if isinstance(n, int) and n > 0 else 1


def cell_cost(spec: CellSpec, policy: Policy, shape: ModelShape, data: DataEstimator,
              evals: dict[str, EvalCost]) -> CellCost:
    mode = training_mode(spec)
    early_stop = bool(policy.statistics.early_stop)
    p = spec.params
    n_samples = p.get("n_samples")
    # A search's trials draw their batch size from its space: cost the largest (an upper
    # estimate); every trial is costed at the cell's max_steps, which bounds its steps.
    batch = int(max(searched(p, "batch_size") or [8]))
    batch = min(batch, int(n_samples)) if n_samples else batch
    seq = 0.0
    assumed: list[str] = []
    stats: DataStats | None = None
    if mode != "eval":
        stats = data.stats(p["dataset"]) if p.get("dataset") else None
        per_example = (stats.padded(batch) if stats
                       else ASSUMED_PROMPT_TOKENS + ASSUMED_RESPONSE_TOKENS
                       ) + data.counter.template_tokens
        cap = min(int(p.get("max_length", 10**9)), shape.max_positions or 10**9)
        seq = min(per_example, cap)
        if not (stats and stats.measured):
            assumed.append(f"{spec.attack_id}: training data length assumed")
    steps = spec.max_steps * trials(spec) if mode != "eval" else 0
    tokens = steps * batch * seq
    at = [(s, e) for s in spec.checkpoints for e in spec.evaluate] * trials(spec) + [
        (spec.max_steps, e) for e in spec.evaluate_final]
    runs = [(s, after_training(evals[e]) if s > 0 else evals[e]) for s, e in at]
    runs += edit_runs(spec, shape, data)
    eval_flop = sum(e.flop(shape.n_active) for _, e in runs)
    return CellCost(spec.id, spec.attack_id, spec.role, spec.technique, mode, steps, batch, seq,
                    str(p.get("optimizer", "adamw")), len(at), tokens,
                    FLOP_FACTOR[mode] * shape.n_active * tokens, eval_flop,
                    sum(e.generated for _, e in runs),
                    sum(e.decode_steps for _, e in runs), assumed, spec.seed, spec.max_steps,
                    runs, early_stop and mode != "eval" and len(spec.checkpoints) > 1,
                    shape.n_active, shape.layers, shape.n_params)


def edit_runs(spec: CellSpec, shape: ModelShape, data: DataEstimator,
              ) -> list[tuple[int, EvalCost]]:
    """The passes an attack runs at each checkpoint to make its edit (its registration's
    ``checkpoint_work``), as evaluation-like runs of kind ``edit``: they cost time and FLOP
    like an evaluation's, and store no samples."""
    plugin = registry.get("attack", spec.technique)
    work = plugin.extra.get("checkpoint_work")
    if work is None:
        return []
    params = plugin.params.model_validate(spec.params)
    ref = getattr(params, "dataset", None)  # the validated default when the policy names none
    prompt = data.stats(ref).prompt_tokens if ref is not None else ASSUMED_PROMPT_TOKENS
    counter = data.counter
    rows = work(params, shape.layers, counter.post_instruction_tokens or counter.template_tokens)
    return [(s, EvalCost(items=int(r["items"]), prompt_tokens=prompt + r["extra_tokens"],
                         new_tokens=int(r["new_tokens"]), batch=max(1, int(r["batch"])),
                         measured=False, kind="edit", eval_id=f"{spec.attack_id}:edit",
                         template_tokens=counter.template_tokens))
            for s in spec.checkpoints if s > 0 for r in rows]


def after_training(run: EvalCost) -> EvalCost:
    """A generating evaluation after training steps: costed to max_new_tokens again.

    A model in the middle of being fine-tuned often does not end its answers: in the
    ci-smoke demo (tiny-chat, 144 harm prompts, max_new_tokens 64) the longest answer at a
    harmful cell's checkpoints ran to 63-66 tokens at about half of them before settling
    at the training responses' ~37, and after benign fine-tuning the harm answers ran to
    the limit at 5 of 6 checkpoints (refusals erode: Qi et al. 2023). The limit is the
    upper bound, and on the demo within 25% of what ran (benchmarks/RESULTS.md)."""
    if run.answer_steps is None:
        return run
    return replace(run, answer_steps=None)


def dtype_bytes(dtype: str) -> int:
    return DTYPE_BYTES.get(dtype, 4)


def memory_need(cell: CellCost, shape: ModelShape, dtype: str, models_loaded: int,
                gradient_checkpointing: bool, fsdp: int = 1) -> dict[str, float]:
    """Bytes one cell needs on the training device and in host RAM, by component.

    certify keeps each loaded model plus an in-memory snapshot of its weights (in
    host RAM) to restore between cells, and holds up to two models (candidate and
    reference) at once. With ``fsdp`` > 1 a full fine-tuning cell trains a sharded copy:
    each device holds 1/fsdp of its weights, gradients and optimizer states and the
    activations of its rows of the batch; rank 0, counted here, also holds the loaded
    models it evaluates.
    """
    b = dtype_bytes(dtype)
    n = shape.n_params
    sharded = fsdp > 1 and cell.mode == "full"
    share = 1 / fsdp if sharded else 1.0
    weights = models_loaded * n * b
    grads = n * b * share if cell.mode == "full" else 0
    optimizer = (OPTIMIZER_STATES.get(cell.optimizer, 2) * n * b * share
                 if cell.mode == "full" else 0)
    per_token = shape.hidden * shape.layers * b
    tokens = (math.ceil(cell.batch / fsdp) if sharded else cell.batch) * cell.seq_tokens
    if cell.mode == "eval":
        activations = 0.0
    elif gradient_checkpointing:
        activations = tokens * (per_token + ACTIVATION_ELEMENTS * shape.hidden * b)
    else:
        activations = tokens * ACTIVATION_ELEMENTS * per_token
    logits = tokens * shape.vocab * 4 * 2 if cell.mode != "eval" else 0.0  # fp32 logits + grad
    need = {"weights": float(weights), "gradients": float(grads), "optimizer": float(optimizer),
            "activations": float(activations + logits),
            "snapshot": float(models_loaded * n * b)}
    if sharded:
        need["shard"] = float(n * b * share)
    return need
