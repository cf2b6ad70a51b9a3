"""The dry-run report: its numbers, and the same in words (table, warnings, assumptions)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from certify.cost import hardware as hw
from certify.cost.workload import (
    ASSUMED_EVAL_ITEMS,
    ASSUMED_PROMPT_TOKENS,
    ASSUMED_RESPONSE_TOKENS,
    CellCost,
    DataEstimator,
    TokenCounter,
)
from certify.policy.schema import Policy

GIB = float(1 << 30)
LABELS = {"weights": "weights", "gradients": "gradients", "optimizer": "optimizer states",
          "activations": "activations", "snapshot": "weight snapshot for restores",
          "shard": "sharded training copy"}


@dataclass
class Row:
    attack_id: str
    role: str
    technique: str
    mode: str
    cells: int = 0
    max_steps: int = 0
    steps: int = 0
    tokens: float = 0.0
    train_flop: float = 0.0
    eval_flop: float = 0.0
    seconds: float = 0.0
    kind: str = ""
    """What the cells do, in words (``mode`` is how they are costed): a soft prompt is
    costed as LoRA ("lora") but shown as "soft prompt"."""


@dataclass
class EvalRow:
    """One evaluation of the policy: one run of it, and how many runs the plan makes."""

    eval_id: str
    plugin: str
    kind: str
    """generate (prompts answered token by token) or lm_eval (log-likelihoods, batched)."""
    items: int
    requests: int
    """Forward passes over a prompt: one per choice of a multiple-choice item."""
    new_tokens: int
    flop: float
    seconds: float
    """One run on the candidate here (a checkpoint of a cell, or a baseline)."""
    runs: int


@dataclass
class DryRunReport:
    """The plan preview: cells, steps, tokens, FLOP, memory and time on this machine."""

    policy: dict[str, Any]
    model: dict[str, Any]
    reference: str | None
    hardware: dict[str, Any]
    rows: list[Row]
    totals: dict[str, float]
    memory: dict[str, Any]
    seconds: float
    reference_gpu_hours: float
    largest_cell_gpu_hours: float
    largest_cell_flop: float
    feasible: bool
    warnings: list[str] = field(default_factory=list)
    assumptions: list[str] = field(default_factory=list)
    evaluations: list[EvalRow] = field(default_factory=list)
    """Per evaluation: the cost of one run (one checkpoint) and the number of runs."""
    cells: list[dict[str, Any]] = field(default_factory=list)
    """Per cell: its estimate to max_steps, split into training and evaluation, and
    (when early stopping may end it) the estimate if it stops at its first checkpoint."""
    cell_costs: list[CellCost] = field(default_factory=list, repr=False)
    machine: hw.Hardware | None = field(default=None, repr=False)
    """The workload and the measured machine behind the numbers (for benchmarks; not JSON)."""
    load_seconds: float = 0.0
    """Loading the models, as the calibration timed it (part of ``seconds``): an audit
    loads each model once before its first cell; 0 when no model was loaded here."""

    def as_json(self) -> dict[str, Any]:
        return {"dry_run": True, "policy": self.policy, "model": self.model,
                "reference": self.reference, "hardware": self.hardware,
                "attacks": [r.__dict__ for r in self.rows], "totals": self.totals,
                "memory": self.memory, "estimated_seconds": self.seconds,
                "load_seconds": self.load_seconds,
                "reference_gpu_hours": self.reference_gpu_hours,
                "largest_cell_gpu_hours": self.largest_cell_gpu_hours,
                "largest_cell_flop": self.largest_cell_flop, "feasible": self.feasible,
                "warnings": self.warnings, "assumptions": self.assumptions, "cells": self.cells,
                "evaluations": [e.__dict__ for e in self.evaluations]}

    def text(self) -> str:
        return render_text(self)


def si(x: float) -> str:
    """1234567 -> '1.2 M'; keeps small numbers exact."""
    for size, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= size:
            return f"{x / size:.1f} {unit}"
    return f"{x:.0f}"


def flop(x: float) -> str:
    return "0" if x <= 0 else f"{x:.1e}"


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    if seconds < 730 * 86400:
        return f"{seconds / 86400:.0f} days"
    return f"{seconds / (365.25 * 86400):.0f} years"


def gib(x: float) -> str:
    return f"{x / GIB:.1f} GiB" if x >= 0.1 * GIB else f"{x / (1 << 20):.0f} MiB"


def _device_words(h: dict[str, Any]) -> str:
    if h["device"] == "cuda":
        return f"this GPU ({h['name']})"
    return f"this CPU ({h['cores']} core{'s' if h['cores'] != 1 else ''})"


def _memory_options(report: DryRunReport) -> str:
    m = report.memory
    options = []
    if m["device"] == "cpu":
        options.append("a GPU with enough memory (--device cuda)")
    elif m["worst_mode"] == "full":
        options.append("sharding full fine-tuning over several GPUs (--fsdp N)")
    if m["dtype"] == "float32":
        options.append("--dtype bfloat16 (halves weights, gradients and optimizer states)")
    if not m["gradient_checkpointing"] and m["components"].get("activations", 0) > 0:
        options.append("--gradient-checkpointing (cuts activations)")
    if report.reference:
        options.append("auditing the candidate and the reference in separate runs")
    options.append("a bigger machine, or an overlay limited to LoRA attacks")
    return "; ".join(options)


def _memory_warning(report: DryRunReport) -> str | None:
    m = report.memory
    if m["fits"]:
        return None
    mode = {"full": "Full fine-tuning", "lora": "LoRA fine-tuning", "eval": "Evaluation",
            "soft prompt": "Soft-prompt training", "weight edit": "A weight edit"}.get(
        m.get("worst_kind", m["worst_mode"]), "Evaluation")
    short = m["device_need"] > m["device_available"]
    on_host = m["device"] == "cpu" or not short
    parts = ", ".join(f"{LABELS[k]} {gib(v)}" for k, v in m["components"].items()
                      if v > 0 and (m["device"] == "cpu" or (k == "snapshot") != short))
    where = "RAM" if on_host else "GPU memory"
    need, have = ((m["device_need"], m["device_available"]) if short
                  else (m["host_need"], m["host_available"]))
    return (f"DOES NOT FIT: {mode} of this {si(report.model['parameters'])}-parameter model in "
            f"{m['dtype']} needs about {gib(need)} ({parts}), but this machine has {gib(have)} "
            f"of {where} available. Options: {_memory_options(report)}.")


def _time_warning(report: DryRunReport) -> str | None:
    if report.seconds <= 24 * 3600:
        return None
    t, h = report.totals, report.hardware
    rate = h["train_flops"]
    ref_rate = hw.REFERENCE_GPU_FLOPS * hw.REFERENCE_UTILISATION
    return (f"INFEASIBLE HERE: this plan runs {t['cells']:,} cells with {t['steps']:,} "
            f"optimizer steps in all ({si(t['tokens'])} training tokens; "
            f"{flop(t['train_flop'])} FLOP of training and {flop(t['eval_flop'])} FLOP of "
            f"evaluation). T{_device_words(h)[1:]} sustained {rate / 1e9:.1f} GFLOP/s "
            f"in a quick matrix-multiply measurement at this model's width, so the plan would "
            f"take about {duration(report.seconds)} here. The policy's budget is sized for GPU "
            f"servers: about {report.reference_gpu_hours:,.1f} GPU-hours on an "
            f"{hw.REFERENCE_GPU} (assumed {ref_rate / 1e12:.0f} TFLOP/s "
            "effective, and at least 10 ms per optimizer step). For a pipeline check on a CPU "
            "use `--policy ci-smoke`.")


def warnings(report: DryRunReport, policy: Policy, *, plan_reference: bool) -> list[str]:
    out = [w for w in (_memory_warning(report), _time_warning(report)) if w]
    cap = policy.threat_model.max_gpu_hours_per_cell
    cell_hours = report.largest_cell_gpu_hours
    if cap is not None and cell_hours > cap:
        out.append(f"The largest cell needs about {cell_hours:,.1f} GPU-hours on an "
                   f"{hw.REFERENCE_GPU}, more than the {cap:g} GPU-hours per cell the policy's "
                   "threat model grants the attacker; the budget and the threat model disagree.")
    if not plan_reference:
        out.append("No reference model was given: the plan covers the candidate only. The "
                   "positive control, weak resistance, stability and trainability checks need "
                   "--reference (an undefended model of the same family), which about doubles "
                   "the cells and the time.")
    return out


def assumptions(counter: TokenCounter, data: DataEstimator, costs: list[CellCost],
                machine: hw.Hardware) -> list[str]:
    util = hw.UTILISATION[machine.device]
    per = hw.TOKEN_LAYER_SECONDS[machine.device]
    lo, hi = hw.EXPECTED_ERROR if machine.calibration else hw.UNCALIBRATED_ERROR
    source = ("fitted to steps timed on a 2-core CPU" if machine.device == "cpu"
              else "assumed, not yet measured on a GPU")
    out = [
        "Training FLOP = 6 x parameters x tokens (full fine-tuning), 4 x parameters x tokens "
        "(LoRA); evaluation FLOP = 2 x parameters x (prompt + generated tokens).",
        f"Tokens per example counted with {counter.method}, plus "
        f"{counter.template_tokens:.0f} chat-template tokens, capped at the attack's "
        "max_length and the model's context length; a step trains min(batch_size, "
        "n_samples) examples.",
        f"Time = FLOP / (measured matmul rate x utilisation) + a per-token, per-layer cost "
        f"for the rest of each step. Utilisation {util['full']:.0%} (full fine-tuning), "
        f"{util['lora']:.0%} (LoRA), {util['forward']:.0%} (reading prompts) and "
        f"{util['decode']:.0%} (decoding); per token and layer "
        f"{per['full'] * 1e6:g}/{per['lora'] * 1e6:g}/{per['forward'] * 1e6:g}/"
        f"{per['decode'] * 1e6:g} us; {source} (certify/cost/hardware.py). Measured now: "
        f"{machine.train_flops / 1e9:.1f} GFLOP/s (training shape) and "
        f"{machine.decode_flops / 1e9:.1f} GFLOP/s (decoding shape) with "
        f"{machine.measured}."
        + (" Each kind of work is then scaled by the model's own timing here (the "
           "calibration line below)." if machine.calibration else ""),
        f"Expected error: on the calibration machine real cells took {lo:.2g}x to {hi:.2g}x "
        f"the estimate{' calibrated on the model' if machine.calibration else ''} "
        "(benchmarks/RESULTS.md, bench_cost_preview.py); on a machine whose load changes "
        "after the preview, or with a different torch thread count, expect more.",
        ("Generation before training (baselines) is costed to the decoding steps the "
         "model's own batches of each evaluation ran here before their longest answer ended "
         "(EOS); after training steps to max_new_tokens (a model being fine-tuned often "
         "does not end its answers)."
         if any(e.answer_steps is not None for c in costs for _, e in c.eval_runs) else
         "Generation is costed to max_new_tokens; a model that ends its answers early (EOS) "
         "takes less."),
        "Model loading, judges other than keyword/canary rules, and report rendering are not "
        "counted.",
    ]
    unread = sorted({s.label for s in data.cache.values() if not s.measured})
    if unread:
        out.append(f"Not read by a dry run (hub or missing datasets), so assumed "
                   f"{ASSUMED_PROMPT_TOKENS}-token prompts, {ASSUMED_RESPONSE_TOKENS}-token "
                   f"responses and {ASSUMED_EVAL_ITEMS} evaluation items unless the policy sets "
                   f"`n`: {', '.join(unread)}.")
    return out


def _table(report: DryRunReport) -> list[str]:
    head = (f"{'attack':<22} {'model':<9} {'mode':<11} {'cells':>6} {'steps/cell':>10} "
            f"{'tokens':>9} {'train FLOP':>10} {'eval FLOP':>10} {'time here':>10}")
    lines = [head, "-" * len(head)]
    for r in report.rows:
        lines.append(f"{r.attack_id[:22]:<22} {r.role:<9} {r.kind or r.mode:<11} {r.cells:>6,} "
                     f"{r.max_steps:>10,} {si(r.tokens):>9} {flop(r.train_flop):>10} "
                     f"{flop(r.eval_flop):>10} {duration(r.seconds):>10}")
    t = report.totals
    lines += ["-" * len(head),
              f"{'total':<44} {t['cells']:>6,} {'':>10} {si(t['tokens']):>9} "
              f"{flop(t['train_flop']):>10} {flop(t['eval_flop']):>10} "
              f"{duration(report.seconds):>10}"]
    return lines


def _eval_table(report: DryRunReport) -> list[str]:
    """What one checkpoint's evaluation costs, per evaluation (knowledge vs generation)."""
    if not report.evaluations:
        return []
    head = (f"{'evaluation':<22} {'plug-in':<16} {'kind':<8} {'items':>6} {'requests':>8} "
            f"{'new tok':>7} {'FLOP/run':>9} {'time/run':>9} {'runs':>5}")
    lines = ["", head, "-" * len(head)]
    for e in report.evaluations:
        lines.append(f"{e.eval_id[:22]:<22} {e.plugin[:16]:<16} {e.kind:<8} {e.items:>6,} "
                     f"{e.requests:>8,} {e.new_tokens:>7,} {flop(e.flop):>9} "
                     f"{duration(e.seconds):>9} {e.runs:>5,}")
    return lines


def _generation_line(report: DryRunReport) -> list[str]:
    """How much of the estimate is evaluation, which is costed to max_new_tokens."""
    evals = sum(c["eval_seconds"] for c in report.cells)
    if not report.seconds or not evals:
        return []
    if not report.totals.get("generated_tokens"):
        return [f"Of that, {duration(evals)} ({evals / report.seconds:.0%}) is evaluation "
                "(log-likelihoods only: nothing is generated)."]
    if any(e.answer_steps is not None for c in report.cell_costs for _, e in c.eval_runs):
        return [f"Of that, {duration(evals)} ({evals / report.seconds:.0%}) is evaluation: "
                "before training as long as the model's measured answers (it ends them at "
                "EOS; a batch stops when its longest answer ends), after training steps to "
                "max_new_tokens, an upper bound."]
    return [f"Of that, {duration(evals)} ({evals / report.seconds:.0%}) is evaluation, with "
            "every answer costed to max_new_tokens: an upper bound, since a model that ends "
            "its answers (EOS) stops generating sooner (a batch stops when its longest "
            "answer ends)."]


def _early_stop_lines(report: DryRunReport) -> list[str]:
    """Where early stopping may end cells sooner: how many, and the range of their time."""
    may = [c for c in report.cells if c["early_stop"]]
    if not may:
        return []
    most = sum(c["seconds"] for c in may)
    least = sum(c["seconds_if_stopped_first"] for c in may)
    return [f"Early stopping: {len(may)} of {len(report.cells)} cells may end once their "
            f"outcome is decided; together they take {duration(least)} (all decided at their "
            f"first checkpoint) to {duration(most)} (none decided before max_steps)."]


def render_text(report: DryRunReport) -> str:
    p, m, h, mem = report.policy, report.model, report.hardware, report.memory
    label = "" if p["evidentiary"] else " [non-evidentiary]"
    lines = [
        f"Plan preview (dry run; nothing was trained): policy {p['id']} {p['version']}{label}",
        f"  model      {m['spec']}: {m['parameters']:,} parameters (from {m['source']})",
        f"  reference  {report.reference or 'none given'}",
        f"  hardware   {h['device']}: {h['name'] or 'unknown'}, {gib(h['memory_available'])} of "
        f"{gib(h['memory_total'])} {'RAM' if h['device'] == 'cpu' else 'GPU memory'} available",
        "", *_table(report), *_eval_table(report), "",
        f"Optimizer steps: {report.totals['steps']:,} in all; evaluations: "
        f"{report.totals['evaluations']:,} ({si(report.totals['generated_tokens'])} generated "
        "tokens).",
        f"Memory: the heaviest cell ({mem.get('worst_kind', mem['worst_mode'])}) needs about "
        f"{gib(mem['device_need'])} "
        f"on the {mem['device']} of {gib(mem['device_available'])} available"
        f" -> {'fits' if mem['fits'] else 'DOES NOT FIT'}.",
        f"Estimated time here: {duration(report.seconds)} "
        + (f"({duration(report.load_seconds)} of it loading the models, as timed here) "
           if report.load_seconds >= 1 else "")
        + (f"at the load the calibration saw (this process got one CPU second per "
           f"{h['load']:.1f} s); on an otherwise idle machine about "
           f"{duration(report.seconds / h['load'])} "
           if h.get("calibration") and h.get("load", 1.0) > 1.2 else "")
        + f"({report.reference_gpu_hours:,.1f} GPU-hours on an {hw.REFERENCE_GPU} for "
        "comparison).",
        *_generation_line(report),
        *_early_stop_lines(report),
        f"Largest cell: {flop(report.largest_cell_flop)} FLOP (statutory compute lines such as "
        "10^25 and 10^26 FLOP concern training a model, not this audit).",
    ]
    if report.warnings:
        lines += ["", "Warnings:"] + [f"  ! {w}" for w in report.warnings]
    lines += ["", "Assumptions:"] + [f"  - {a}" for a in report.assumptions]
    lines += ["", "Feasible on this machine: " + ("yes" if report.feasible else "NO")]
    return "\n".join(lines)
