"""Calibrate the cost model on the model itself, on this machine, at preview time.

The fitted constants of certify.cost.hardware came from two model shapes on one machine
at one load; on the demo model they overestimated real cells 1.4-3.5x, and for a model
that ends its answers at EOS every generation was costed to max_new_tokens. So the dry
run loads the model (when that is quick) and times, at the plan's own shapes: one
full fine-tuning step, one LoRA step (rank 8, every linear layer), a batch of prompts
read in parallel, and decoding steps at the evaluation batch size. Each timing divided
by what the fitted model predicts for it is a factor that then scales every row of the
preview (certify.cost.hardware.token_seconds), so the preview is right at this model's
shape, this machine's speed and its current load. It also generates, greedily as the
evaluations do, each generating evaluation's own prompts in its own batches, and counts
the decoding steps each batch ran before its longest answer ended: the EOS-aware length
of that evaluation before training (after training steps the preview costs answers to
max_new_tokens again: certify.cost.workload.after_training says why).

Why measure at preview time rather than cache a per-machine calibration: the machines
certify runs on are often shared (CI runners, the 2-core machine of
benchmarks/RESULTS.md, where the same cell took 4.1 s and 7.5 s in two runs minutes
apart), so a cached rate carries an old load; and answer lengths belong to the weights,
not the machine. The measurement is bounded: each timing's batch shrinks until the
fitted model predicts it under its share of ``BUDGET_SECONDS``, and models too large to
load quickly (``MAX_PARAMETERS``) are not measured at all; the preview then says it
uses the fitted constants. Model loading itself is not timed by the budget.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from certify.cost import hardware as hw
from certify.cost.shape import ModelShape
from certify.cost.workload import TokenCounter
from certify.errors import ModelError

log = logging.getLogger(__name__)

BUDGET_SECONDS = 60.0
"""What the measurement may cost, as the fitted model predicts it (loading aside)."""
MAX_PARAMETERS = {"cpu": 400e6, "cuda": 3e9}
"""Models above this are not loaded by a preview: loading alone takes too long."""
DECODE_STEPS = 16
"""Decoding steps timed at most (the difference of two generations, so the prefill
cancels); fewer when the budget is tight."""
MIN_SECONDS = 1.0
"""Each timing repeats for at least this long (the budget may make one call longer)."""
KINDS = ("forward", "decode", "full", "lora")
SHARE = {"forward": 0.1, "decode": 0.15, "full": 0.2, "lora": 0.15, "answers": 0.4}
"""Each measurement's share of the budget."""


@dataclass(frozen=True)
class Probe:
    """The plan's shapes: what to time."""

    train: dict[str, tuple[int, int]]
    """Training mode (full, lora) -> (batch, tokens per row) of its largest cell."""
    eval_batch: int
    prompt_tokens: int
    answers: dict[str, tuple[list[str], int, int]] = field(default_factory=dict)
    """Generating evaluation -> (its prompts, max_new_tokens, batch_size)."""


@dataclass(frozen=True)
class Calibration:
    factors: dict[str, float]
    """Measured / modelled seconds per kind of work."""
    answer_steps: dict[str, float]
    """Evaluation -> decoding steps its first batch ran before the longest answer ended."""
    seconds: float
    """What the measurement took, loading included."""
    notes: list[str] = field(default_factory=list)
    load: float = 1.0
    """Wall-clock seconds per CPU second this process got while measuring (in the
    factors): the estimate on an otherwise idle machine is about the estimate / load."""
    counter: TokenCounter | None = None
    """Counts tokens with the loaded model's own tokenizer and chat template."""
    load_seconds: float = 0.0
    """What loading the model took here (part of ``seconds``): an audit pays it once per
    model and worker before its first cell, outside every cell's time (a GGUF file is
    de-quantized on load, which takes minutes on a small CPU)."""

    def describe(self) -> str:
        parts = ", ".join(f"{k} {v:.2f}x" for k, v in self.factors.items())
        answers = ", ".join(f"{k} {v:g}" for k, v in self.answer_steps.items())
        return (f"Calibrated on the model itself here in {self.seconds:.1f} s (loading it "
                f"{self.load_seconds:.1f} s, which the audit pays once per model, outside the "
                f"cells, and the estimate counts once): measured / "
                f"fitted time {parts or 'not measured'}"
                + (f"; mean decoding steps per batch until EOS before training: {answers}"
                   if answers else "")
                + (f"; tokens counted with its own tokenizer, its chat template adding "
                   f"{self.counter.template_tokens:.0f} per example" if self.counter else "")
                + ".")


class ModelTokens(TokenCounter):
    """Tokens counted with the loaded model's own tokenizer, and what its chat template
    adds around a prompt/response pair (certify.models.chat: the formatted prompt and
    the end-of-turn token after the response), measured on ``prompts``.

    The dry run otherwise counts with a tokenizer.json beside the weights, which a GGUF
    file does not have (4 characters per token instead), and assumes 8 template tokens.
    For SmolLM2-135M-Instruct that counted ci-smoke's training examples at 52 tokens where
    the training loop fed about 96 (its responses tokenize at 2.4 characters per token, and its
    template adds a 30-token default system prompt), so every training step, and every
    prompt read before generation, was costed at about half its length."""

    def __init__(self, tokenizer: Any, prompts: list[str]) -> None:
        from certify.models.chat import format_prompt, response_text

        self.tokenizer = tokenizer
        self.method = "the model's own tokenizer (loaded by the calibration)"
        extra, formatted = [], []
        for prompt in (prompts[:16] or ["Hello."]):
            text = format_prompt(tokenizer, prompt, None)
            end = response_text(tokenizer, text, "")
            formatted.append(self._ids(text))
            extra.append(len(formatted[-1]) + len(self._ids(end)) - len(self._ids(prompt)))
        self.template_tokens = max(0.0, sum(extra) / len(extra))
        if len({tuple(ids) for ids in formatted}) > 1:  # the suffix they all share
            common = 0
            while (common < min(map(len, formatted))
                   and len({ids[-common - 1] for ids in formatted}) == 1):
                common += 1
            self.post_instruction_tokens = max(1, common)

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def counts(self, texts: list[str]) -> list[int]:
        return [len(self._ids(t)) for t in texts[:256]]


def skip_reason(shape: ModelShape, machine: hw.Hardware) -> str | None:
    """Why this model is not measured at preview time, or None."""
    limit = MAX_PARAMETERS.get(machine.device, MAX_PARAMETERS["cpu"])
    if shape.n_params > limit:
        return (f"the model ({shape.n_params / 1e6:,.0f}M parameters) is too large to load "
                f"and time for a preview (limit {limit / 1e6:,.0f}M)")
    return None


class _Clock:
    """Times calls in this process's CPU seconds (on a CPU) and keeps the wall-clock total.

    On a shared machine a short timing can land in another process's time slice: a tenth
    of a second of wall-clock timings gave a decoding factor of 2.6x where the audit then
    ran at 1x. So each kind of work is timed in CPU seconds (what the model costs, stable
    under load), and the load -- wall over CPU seconds across the whole measurement, a
    few seconds -- multiplies every factor once. On a GPU, wall-clock time throughout."""

    def __init__(self, wall_only: bool, sync: Any) -> None:
        self.wall_only, self.sync = wall_only, sync
        self.wall = self.cpu = 0.0

    def seconds(self, fn: Any) -> float:
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        self.sync()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        self.wall += wall
        self.cpu += cpu
        return wall if self.wall_only else cpu

    @property
    def load(self) -> float:
        """Wall-clock seconds per CPU second this process got (1 on a GPU)."""
        return 1.0 if self.wall_only or self.cpu <= 0 else self.wall / self.cpu


def _timed(fn: Any, clock: _Clock, min_seconds: float = MIN_SECONDS) -> float:
    """Median seconds of ``fn()`` after one warm-up call, repeated until ``min_seconds``
    of wall-clock time have passed (at least 3 calls, or 1 when the warm-up call alone
    took that long; at most 50)."""
    started = time.perf_counter()
    fn()
    clock.sync()
    least = 1 if time.perf_counter() - started >= min_seconds else 3
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < least or (time.perf_counter() - started < min_seconds
                                 and len(times) < 50):
        times.append(clock.seconds(fn))
    return statistics.median(times)


def _rows_within(per_row_seconds: float, wanted: int, budget: float, calls: int) -> int:
    """The largest batch up to ``wanted`` whose ``calls`` predicted runs fit ``budget``."""
    if per_row_seconds <= 0:
        return wanted
    return max(0, min(wanted, int(budget / (calls * per_row_seconds))))


class _Timer:
    def __init__(self, handle: Any, shape: ModelShape, machine: hw.Hardware) -> None:
        import torch

        self.torch, self.handle, self.shape, self.machine = torch, handle, shape, machine
        self.device = machine.device
        cuda = machine.device == "cuda"
        self.sync = torch.cuda.synchronize if cuda else (lambda: None)
        self.clock = _Clock(cuda, self.sync)
        self.vocab = min(int(handle.model.config.vocab_size), shape.vocab or 10**9)
        self.gen = torch.Generator().manual_seed(0)

    def modelled(self, kind: str) -> float:
        return hw.token_seconds(self.machine, kind, self.shape.n_active, self.shape.layers,
                                calibrated=False)

    def ids(self, rows: int, tokens: int) -> tuple[Any, Any]:
        torch = self.torch
        ids = torch.randint(3, max(4, self.vocab), (rows, tokens), generator=self.gen)
        return ids.to(self.device), torch.ones_like(ids).to(self.device)

    def forward(self, rows: int, tokens: int) -> float:
        ids, mask = self.ids(rows, tokens)
        model = self.handle.model
        with self.torch.no_grad():
            seconds = _timed(lambda: model(input_ids=ids, attention_mask=mask), self.clock)
        return seconds / (rows * tokens)

    def decode(self, rows: int, tokens: int, steps: int = 16) -> float:
        ids, mask = self.ids(rows, tokens)
        model, tok = self.handle.model, self.handle.tokenizer

        def gen(n: int) -> Any:
            return lambda: model.generate(input_ids=ids, attention_mask=mask, do_sample=False,
                                          max_new_tokens=n, min_new_tokens=n,
                                          pad_token_id=tok.pad_token_id)

        short, long = gen(1), gen(1 + steps)
        with self.torch.no_grad():
            pairs: list[float] = []
            _timed(lambda: pairs.append(self.clock.seconds(short) - self.clock.seconds(long)),
                   self.clock)
        # Paired differences (each long generation beside a short one), so a slow moment
        # of the machine hits both.
        return max(-statistics.median(pairs), 1e-9) / (steps * rows)

    def train(self, model: Any, rows: int, tokens: int) -> float:
        from certify.train import Optim, Stepper

        params = [p for p in model.parameters() if p.requires_grad]
        optimizer, _ = Optim("adamw", 1e-12).build(params)
        step = Stepper(model, optimizer, None, device=self.device)
        ids, mask = self.ids(rows, tokens)
        model.train()
        seconds = _timed(lambda: step(1, ids, mask, ids), self.clock)
        model.eval()
        return seconds / (rows * tokens)

    def answers(self, prompts: list[str], new_tokens: int, batch: int) -> float:
        """Mean decoding steps a batch of ``prompts`` runs greedily before its longest
        answer ends, batched as certify.models.generate.complete batches them (sorted by
        length)."""
        from certify.models.chat import format_prompt

        tok = self.handle.tokenizer
        encoded = sorted((tok(format_prompt(tok, p, None), add_special_tokens=False)
                          ["input_ids"] for p in prompts), key=len)
        steps = [self._answer_batch(encoded[i:i + batch], new_tokens)
                 for i in range(0, len(encoded), batch)]
        return sum(steps) / len(steps)

    def _answer_batch(self, encoded: list[list[int]], new_tokens: int) -> float:
        torch, tok, model = self.torch, self.handle.tokenizer, self.handle.model
        width = max(len(e) for e in encoded)
        ids = torch.full((len(encoded), width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, seq in enumerate(encoded):
            ids[r, width - len(seq):] = torch.tensor(seq)
            mask[r, width - len(seq):] = 1
        with torch.no_grad():
            out = model.generate(input_ids=ids.to(self.device),
                                 attention_mask=mask.to(self.device), do_sample=False,
                                 max_new_tokens=new_tokens, pad_token_id=tok.pad_token_id,
                                 eos_token_id=tok.eos_token_id)
        return float(out.shape[1] - width)


def _load(spec: str, revision: str | None, machine: hw.Hardware, dtype: str) -> Any:
    from certify.models.source import ModelIdentity, resolve

    # Resolved before torch is imported: a builtin model not built yet is not built by a
    # preview, and such a preview stays torch-free.
    source = resolve(spec, revision=revision, build=False)
    if not source.path.exists():
        raise ModelError(f"{spec} is not built yet (the audit builds it; a preview does not)")
    from certify.models.load import LoadOptions, load

    # The preview hashes nothing: the identity is the audit's business.
    identity = ModelIdentity(spec, source.kind, revision, "", {}, 0, {})
    return load("candidate", source, identity, LoadOptions(device=machine.device, dtype=dtype))


def measure(spec: str, revision: str | None, shape: ModelShape, machine: hw.Hardware,
            dtype: str, probe: Probe | Callable[[TokenCounter], Probe],
            budget: float = BUDGET_SECONDS, time_work: bool = True) -> Calibration:
    """Time the model ``spec`` at the shapes of ``probe`` on ``machine`` and measure its
    answer lengths; with ``time_work`` False only the answer lengths (a reference model:
    the candidate's timing calibrates the machine).

    ``probe`` may be a function of the model's own token counter (``ModelTokens``): the
    shapes are then those of the plan counted with it. A training step costs a fixed
    part (the optimizer's update of every weight: 1.1 s at SmolLM2-135M's shape) plus a
    part per token, and the factor is per token, so timing at the wrong length moves it:
    at 4 x 55 tokens (4 characters per token) a step cost 19.4 ms a token, at the real
    4 x 96 15.0 ms (CPU seconds, 2026-12-07)."""
    started = time.perf_counter()
    handle = _load(spec, revision, machine, dtype)
    load_seconds = time.perf_counter() - started
    timer = _Timer(handle, shape, machine)
    if callable(probe):
        counter = ModelTokens(handle.tokenizer, [])
        probe = probe(counter)
    counter = ModelTokens(handle.tokenizer, [p for prompts, _, _ in probe.answers.values()
                                             for p in prompts])
    factors: dict[str, float] = {}
    notes: list[str] = []
    tokens = max(2, probe.prompt_tokens)
    if not time_work:
        probe = Probe({}, 0, tokens, probe.answers)

    def fit(kind: str, wanted: int, row_tokens: int, calls: int, run: Any) -> None:
        """``run(rows)`` gives seconds per row-token at ``rows`` rows; the factor is at the
        plan's ``wanted`` rows. A step costs a + b x rows (weights read once per decoding
        step, an optimizer update once per training step), so a batch cut down to fit the
        budget is timed at two sizes and the line is extended to ``wanted``: one small
        batch's per-row cost overstated decoding 6.6x at SmolLM2-135M's shape."""
        rows = _rows_within(timer.modelled(kind) * row_tokens, wanted,
                            budget * SHARE[kind] / (1 if wanted <= 1 else 1.5), calls)
        if rows < 1:
            notes.append(f"{kind}: one row would exceed the measurement budget; not measured")
            return
        if rows >= wanted or rows < 2:
            factors[kind] = run(rows) / timer.modelled(kind)
            if rows < wanted:
                notes.append(f"{kind}: timed at 1 row of {wanted} (the budget); an overestimate")
            return
        small = max(1, rows // 2)
        per_step = {r: run(r) * r for r in (small, rows)}  # seconds per step per row-token
        slope = max(0.0, (per_step[rows] - per_step[small]) / (rows - small))
        fixed = max(0.0, per_step[small] - slope * small)
        factors[kind] = (fixed + slope * wanted) / wanted / timer.modelled(kind)
        notes.append(f"{kind}: timed at {small} and {rows} rows of {wanted} (the budget) and "
                     "extended to the full batch")

    if probe.eval_batch:
        fit("forward", probe.eval_batch, tokens, 4, lambda r: timer.forward(r, tokens))
        # Fewer decoding steps before fewer rows: a step's cost is mostly reading the
        # weights, so the plan's batch size matters more than the number of steps.
        per_step = timer.modelled("decode") * probe.eval_batch
        steps = max(2, min(DECODE_STEPS, int(budget * SHARE["decode"] / (3 * per_step)) - 2))
        fit("decode", probe.eval_batch, 2 + steps, 3,
            lambda r: timer.decode(r, tokens, steps))
    answer_steps: dict[str, float] = {}
    for eval_id, (prompts, new_tokens, batch) in probe.answers.items():
        share = budget * SHARE["answers"] / max(len(probe.answers), 1)
        per_row = timer.modelled("decode") * factors.get("decode", 1.0) * new_tokens
        rows = _rows_within(per_row, len(prompts), share, 1)
        if rows >= 1:
            answer_steps[eval_id] = timer.answers(prompts[:rows], new_tokens, batch)
            if rows < min(batch, len(prompts)):
                notes.append(f"{eval_id}: answer lengths measured on {rows} of its "
                             f"{len(prompts)} prompts (the budget), in batches of up to "
                             f"{batch}: a fuller batch may run longer")
    if "full" in probe.train:
        batch, seq = probe.train["full"]
        model = handle.trainable()
        fit("full", batch, seq, 2, lambda r: timer.train(model, r, seq))
        handle.restore()
    if "lora" in probe.train:
        from peft import LoraConfig, get_peft_model

        batch, seq = probe.train["lora"]
        lora = get_peft_model(handle.model, LoraConfig(r=8, lora_alpha=16,
                                                       target_modules="all-linear",
                                                       task_type="CAUSAL_LM"))
        fit("lora", batch, seq, 2, lambda r: timer.train(lora, r, seq))
        lora.unload()
    seconds = time.perf_counter() - started
    load = timer.clock.load
    factors = {k: v * load for k, v in factors.items()}
    if factors and machine.device == "cpu":
        notes.append(f"this process got one CPU second per {load:.2f} s of wall-clock time "
                     "while it was measured (other work on the machine); the factors include "
                     "that, so a busier or quieter machine later changes the time")
    log.info("cost calibration of %s: %s in %.1f s", spec, factors, seconds)
    return Calibration({k: round(v, 4) for k, v in factors.items() if math.isfinite(v)},
                       answer_steps, seconds, notes, load if factors else 1.0, counter,
                       load_seconds)


def answer_prompts(policy: Any, eval_id: str, limit: int) -> list[str]:
    """Up to ``limit`` of the prompts a generating evaluation reads (its dataset's first
    rows; empty when it names no readable dataset)."""
    from certify import registry
    from certify.data.load import HF_PREFIX, DatasetRef, load_dataset
    from certify.errors import CertifyError

    entry = policy.evaluations[eval_id]
    params = registry.get("eval", entry.eval).params.model_validate(entry.params)
    ref = getattr(params, "dataset", None)
    if not isinstance(ref, DatasetRef) or ref.source.startswith(HF_PREFIX):
        return []
    try:
        rows = load_dataset(ref).rows
    except CertifyError:
        return []
    n = getattr(params, "n", None) or len(rows)
    return [r.prompt for r in rows[:min(n, limit)] if r.prompt]
