"""`certify audit ... --dry-run`: the plan and what it would cost here, before anything runs.

Nothing is trained and no weights are loaded: the model's size comes from its
config (see :mod:`certify.cost.shape`), the cells from :func:`certify.plan.make_plan`,
and the machine's speed from a sub-second matmul measurement. The time estimate
divides the FLOP by the measured rate times a utilisation (the share of that matmul
rate a whole training or decoding step achieves) and adds a per-token, per-layer cost
for the rest of each step, both fitted to timed steps (certify/cost/hardware.py).
Each cell is estimated to its max_steps; where early stopping may end it, the
preview also gives its time if it stopped at its first checkpoint, the range's floor.
benchmarks/bench_cost_preview.py compares the estimate with a real audit per cell.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from certify.cost import calibrate
from certify.cost import hardware as hw
from certify.cost.calibrate import Probe
from certify.cost.report import DryRunReport, EvalRow, Row, assumptions, warnings
from certify.cost.shape import ModelShape, model_shape
from certify.cost.workload import (
    CellCost,
    DataEstimator,
    EvalCost,
    TokenCounter,
    cell_cost,
    eval_cost,
    kind_of,
    memory_need,
)
from certify.errors import CertifyError
from certify.plan import make_plan
from certify.policy.schema import Policy

FEASIBLE_SECONDS = 24 * 3600
DAY = 24 * 3600.0
GIB = float(1 << 30)


def _reference_shape(spec: str | None, candidate: ModelShape, revision: str | None,
                     notes: list[str]) -> ModelShape:
    if spec is None:
        return candidate
    try:
        return model_shape(spec, revision)
    except CertifyError as e:
        notes.append(f"reference {spec}: {e.message}; assumed the candidate's size")
        return candidate


def _eval_seconds(cell: CellCost, machine: hw.Hardware) -> tuple[float, float]:
    """(compute, fixed overhead) seconds of the cell's evaluations."""
    return _runs_seconds([e for _, e in cell.eval_runs], cell.n_active, cell.layers, cell.mode,
                         machine)


def _runs_seconds(runs: list[EvalCost], n_active: int, layers: int, mode: str,
                  machine: hw.Hardware) -> tuple[float, float]:
    lora = mode == "lora"
    forward = sum(e.forward_tokens for e in runs)
    generated = sum(e.generated for e in runs)
    compute = (forward * hw.token_seconds(machine, "forward", n_active, layers, lora)
               + generated * hw.token_seconds(machine, "decode", n_active, layers, lora))
    fixed = sum(hw.EVAL_FIXED_SECONDS.get(e.kind, 0.0) for e in runs)
    return compute + fixed, sum(e.decode_steps for e in runs) * hw.STEP_OVERHEAD[
        machine.device]["decode"]


def _eval_rows(evals: dict[str, EvalCost], costs: list[CellCost], shape: ModelShape,
               policy: Policy, machine: hw.Hardware) -> list[EvalRow]:
    """Per evaluation: what one run of it reads and generates, what one run costs here, and
    how often the plan runs it (a checkpoint of a cell, a baseline)."""
    rows = []
    for eval_id, e in evals.items():
        runs = sum(1 for c in costs for _, run in c.eval_runs if run.eval_id == eval_id)
        once = sum(_runs_seconds([e], shape.n_active, shape.layers, "full", machine))
        rows.append(EvalRow(eval_id, policy.evaluations[eval_id].eval, e.kind, e.items,
                            e.requests if e.requests is not None else e.items, e.new_tokens,
                            e.flop(shape.n_active), once, runs))
    return rows


def cell_seconds(cell: CellCost, machine: hw.Hardware, fsdp: int = 1) -> tuple[float, float]:
    """(training, evaluation) seconds of one cell on ``machine``.

    Each token trained, read or generated costs its matrix products at the measured
    matmul rate times a utilisation, plus a per-layer cost for everything else (see
    certify.cost.hardware for where each constant comes from).
    """
    devices = fsdp if cell.mode == "full" else 1  # a sharded cell trains on fsdp devices
    train = (0.0, 0.0)
    if cell.mode != "eval":
        per_token = hw.token_seconds(machine, cell.mode, cell.n_active, cell.layers)
        setup = (cell.n_params * hw.TRAIN_SETUP_SECONDS_PER_PARAMETER[machine.device]
                 if cell.mode == "full" and cell.steps else 0.0)
        train = (cell.train_tokens * per_token / devices + setup,
                 cell.steps * hw.STEP_OVERHEAD[machine.device]["train"])
    evals = _eval_seconds(cell, machine)
    if machine.device == "cpu":
        return sum(train), sum(evals)
    return max(train), max(evals)


def _time(cell: CellCost, machine: hw.Hardware, fsdp: int = 1) -> float:
    return sum(cell_seconds(cell, machine, fsdp))


def cell_estimate(cell: CellCost, machine: hw.Hardware, fsdp: int = 1) -> dict[str, Any]:
    """One cell's estimate; with early stopping on, also the shortest it can be (stopped at
    its first checkpoint after step 0)."""
    train, evals = cell_seconds(cell, machine, fsdp)
    first = min((s for s, _ in cell.eval_runs if s > 0), default=cell.max_steps)
    shortest = sum(cell_seconds(cell.until(first), machine, fsdp)) if cell.early_stop else None
    return {"id": cell.cell_id, "attack_id": cell.attack_id, "role": cell.role,
            "seed": cell.seed, "mode": cell.mode, "max_steps": cell.max_steps,
            "seconds": train + evals, "train_seconds": train, "eval_seconds": evals,
            "early_stop": cell.early_stop, "seconds_if_stopped_first": shortest}


def reference_gpu_seconds(cell: CellCost) -> float:
    """The cell on one H100-class GPU at the assumed utilisation (for comparison only)."""
    over = hw.STEP_OVERHEAD["cuda"]
    compute = (cell.train_flop + cell.eval_flop) / (hw.REFERENCE_GPU_FLOPS
                                                    * hw.REFERENCE_UTILISATION)
    return max(compute, cell.steps * over["train"] + cell.decode_steps * over["decode"])


def _rows(costs: list[CellCost], machine: hw.Hardware, fsdp: int) -> list[Row]:
    rows: dict[tuple[str, str], Row] = {}
    for c in costs:
        row = rows.setdefault((c.attack_id, c.role), Row(c.attack_id, c.role, c.technique, c.mode,
                                                         kind=kind_of(c.technique, c.mode)))
        row.cells += 1
        row.max_steps = max(row.max_steps, c.steps)
        row.steps += c.steps
        row.tokens += c.train_tokens
        row.train_flop += c.train_flop
        row.eval_flop += c.eval_flop
        row.seconds += _time(c, machine, fsdp)
    return list(rows.values())


def _memory(costs: list[CellCost], shape: ModelShape, opts: Any, machine: hw.Hardware,
            models_loaded: int) -> dict[str, Any]:
    worst: dict[str, float] = {}
    worst_cell, worst_device = None, -1.0
    for c in costs:
        need = memory_need(c, shape, opts.dtype, models_loaded, opts.gradient_checkpointing,
                           opts.fsdp)
        device = sum(v for k, v in need.items() if k != "snapshot" or machine.device == "cpu")
        if device > worst_device:
            worst, worst_cell, worst_device = need, c, device
    parts = {k: v for k, v in worst.items() if machine.device == "cpu" or k != "snapshot"}
    device_need = sum(parts.values())
    host_need = device_need if machine.device == "cpu" else worst.get("snapshot", 0.0)
    return {"device": machine.device, "dtype": opts.dtype, "components": worst,
            "gradient_checkpointing": bool(opts.gradient_checkpointing), "fsdp": opts.fsdp,
            "worst_mode": worst_cell.mode if worst_cell else "eval",
            "worst_kind": (kind_of(worst_cell.technique, worst_cell.mode) if worst_cell
                           else "eval"),
            "device_need": device_need, "device_available": machine.memory_available,
            "device_total": machine.memory_total, "host_need": host_need,
            "host_available": machine.host_available,
            "fits": device_need <= machine.memory_available
            and host_need <= machine.host_available}


@dataclass
class Workload:
    """What the plan asks for, before any machine is measured (shared by the dry run and
    the disk check)."""

    loaded: Any
    policy: Policy
    shape: ModelShape
    reference: str | None
    notes: list[str]
    plan: Any
    counter: TokenCounter
    data: DataEstimator
    evals: dict[str, EvalCost]
    shapes: dict[str, ModelShape]
    costs: list[CellCost]


def workload(opts: Any, digests: dict[str, str | None] | None = None) -> Workload:
    """The plan of the audit ``opts`` describes and each cell's work. Torch-free.

    The cells are planned under placeholder digests (nothing is hashed), or under
    ``digests`` (role -> root digest, a run directory's manifest) so that their ids are
    that run's."""
    from certify.policy.load import load_policy

    loaded = load_policy(opts.policy, opts.overlays)
    policy = loaded.policy
    shape = model_shape(opts.model, opts.revision)
    reference = opts.reference or policy.reference
    notes: list[str] = []
    ref_shape = _reference_shape(reference, shape, opts.reference_revision, notes)
    digests = digests or {}
    plan = make_plan(policy, {"candidate": digests.get("candidate") or "dry-run",
                              "reference": (digests.get("reference") or "dry-run")
                              if reference else None})
    counter = TokenCounter(shape)
    data = DataEstimator(counter)
    evals = {e: eval_cost(policy, e, data) for e in policy.evaluations}
    shapes = {"candidate": shape, "reference": ref_shape}
    costs = [cell_cost(c, policy, shapes[c.role], data, evals) for c in plan.cells]
    return Workload(loaded, policy, shape, reference, notes, plan, counter, data, evals,
                    shapes, costs)


def _probe(policy: Policy, costs: list[CellCost], evals: dict[str, EvalCost]) -> Probe:
    """The shapes the plan runs: its largest training batch per mode, its busiest
    evaluation's batch and prompt length, and each generating evaluation's prompts."""
    train: dict[str, tuple[int, int]] = {}
    for mode in ("full", "lora"):
        cells = [c for c in costs if c.mode == mode]
        if cells:
            big = max(cells, key=lambda c: c.batch * c.seq_tokens)
            train[mode] = (big.batch, max(2, round(big.seq_tokens)))
    runs = [e for c in costs for _, e in c.eval_runs if e.kind != "edit"]
    busiest = max(runs, key=lambda e: e.generated + e.forward_tokens, default=None)
    answers = {}
    for eval_id, e in evals.items():
        if e.kind == "generate" and e.new_tokens > 0:
            prompts = calibrate.answer_prompts(policy, eval_id, e.items)
            if prompts:
                answers[eval_id] = (prompts, e.new_tokens, e.batch)
    return Probe(train, busiest.batch if busiest else 0,
                 round(busiest.prompt_tokens + busiest.template_tokens) if busiest else 0,
                 answers)


def _recount(policy: Policy, cells: list[Any], shapes: dict[str, ModelShape],
             counter: TokenCounter) -> tuple[DataEstimator, dict[str, EvalCost], list[CellCost]]:
    """The plan's evaluations and cells counted with ``counter``."""
    data = DataEstimator(counter)
    evals = {e: eval_cost(policy, e, data) for e in policy.evaluations}
    return data, evals, [cell_cost(c, policy, shapes[c.role], data, evals) for c in cells]


def _calibrate(opts: Any, policy: Policy, shapes: dict[str, ModelShape],
               specs: dict[str, tuple[str, str | None]], cells: list[Any],
               machine: hw.Hardware, notes: list[str],
               ) -> tuple[hw.Hardware, dict[str, dict[str, float]], TokenCounter | None,
                          float]:
    """Time the candidate here and measure each model's answer lengths (certify.cost.
    calibrate); the machine with its factors, each role's decoding steps per evaluation,
    the candidate's own token counter (its tokenizer and chat template), and the seconds
    loading the models took (an audit loads each once; a shared model counts once)."""
    answers: dict[str, dict[str, float]] = {}
    loads: dict[tuple[str, str | None], float] = {}
    counter: TokenCounter | None = None

    def probe(model_counter: TokenCounter) -> Probe:
        """The plan's shapes counted with the loaded model's own tokenizer."""
        _, evals, costs = _recount(policy, cells, shapes, model_counter)
        return _probe(policy, costs, evals)

    for role, (spec, revision) in specs.items():
        reason = calibrate.skip_reason(shapes[role], machine)
        if reason:
            notes.append(f"Not calibrated on the {role} model: {reason}; the fitted constants "
                         "are used and generation is costed to max_new_tokens.")
            continue
        try:
            cal = calibrate.measure(spec, revision, shapes[role], machine, opts.dtype, probe,
                                    time_work=role == "candidate")
        except Exception as e:  # the preview must not fail on its own measurement
            message = e.message if isinstance(e, CertifyError) else f"{type(e).__name__}: {e}"
            notes.append(f"Not calibrated on the {role} model ({message}); the fitted "
                         "constants are used.")
            continue
        if role == "candidate":
            machine = replace(machine, calibration=cal.factors, load=cal.load)
            counter = cal.counter
        answers[role] = cal.answer_steps
        loads[(spec, revision)] = cal.load_seconds
        notes.append(f"{role}: {cal.describe()}")
        notes.extend(f"{role}: {n}" for n in cal.notes)
    return machine, answers, counter, sum(loads.values())


def dry_run(opts: Any, machine: hw.Hardware | None = None,
            calibrate_here: bool | None = None) -> DryRunReport:
    """Preview the audit ``opts`` describes. ``machine`` overrides the measured hardware.

    ``calibrate_here`` (default: when the machine is measured, not given) times the model
    itself on this machine and measures its answer lengths (certify.cost.calibrate)."""
    w = workload(opts)
    loaded, policy, shape, reference, notes = w.loaded, w.policy, w.shape, w.reference, w.notes
    plan, counter, data, evals, shapes, costs = (w.plan, w.counter, w.data, w.evals, w.shapes,
                                                 w.costs)
    trained = [c for c in costs if c.mode != "eval"] or costs
    biggest = max(trained, key=lambda c: c.batch * c.seq_tokens)
    if calibrate_here is None:
        calibrate_here = machine is None and getattr(opts, "calibrate", True)
    if machine is None:
        machine = hw.probe(opts.device, opts.dtype, shape.hidden, shape.ffn,
                           int(biggest.batch * biggest.seq_tokens) or 64,
                           max((e.batch for e in evals.values()), default=64))
    loading = 0.0
    if calibrate_here:
        specs = {"candidate": (opts.model, opts.revision)}
        if reference:
            specs["reference"] = (reference, opts.reference_revision)
        machine, answers, model_counter, loading = _calibrate(opts, policy, shapes, specs,
                                                              plan.cells, machine, notes)
        if model_counter is not None:  # count again with the model's own tokenizer
            counter = model_counter
            data, evals, _ = _recount(policy, plan.cells, shapes, model_counter)
        by_role = {role: {k: replace(e, answer_steps=steps[k]) if k in steps else e
                          for k, e in evals.items()} for role, steps in answers.items()}
        costs = [cell_cost(c, policy, shapes[c.role], data, by_role.get(c.role, evals))
                 for c in plan.cells]
        evals = by_role.get("candidate", evals)  # the evaluation rows: one run on the candidate
    rows = _rows(costs, machine, opts.fsdp)
    memory = _memory(costs, shape, opts, machine, 2 if reference else 1)
    seconds = sum(r.seconds for r in rows) + loading
    total_flop = sum(c.train_flop + c.eval_flop for c in costs)
    report = DryRunReport(
        policy={"id": policy.id, "version": policy.version, "title": policy.title,
                "source": loaded.source, "evidentiary": policy.meta.evidentiary,
                "files": [f.__dict__ for f in loaded.files],
                "max_gpu_hours_per_cell": policy.threat_model.max_gpu_hours_per_cell},
        model={"spec": shape.spec, "source": shape.source, "parameters": shape.n_params,
               "active_parameters": shape.n_active, "hidden": shape.hidden,
               "layers": shape.layers, "max_positions": shape.max_positions},
        reference=reference, hardware=machine.as_json(), rows=rows,
        totals={"cells": len(costs), "steps": sum(c.steps for c in costs),
                "tokens": sum(c.train_tokens for c in costs),
                "generated_tokens": sum(c.generated_tokens for c in costs),
                "evaluations": sum(c.evaluations for c in costs),
                "train_flop": sum(c.train_flop for c in costs),
                "eval_flop": sum(c.eval_flop for c in costs), "flop": total_flop},
        memory=memory, seconds=seconds,
        reference_gpu_hours=sum(reference_gpu_seconds(c) for c in costs) / 3600,
        largest_cell_gpu_hours=max((reference_gpu_seconds(c) for c in costs), default=0.0) / 3600,
        largest_cell_flop=max((c.train_flop + c.eval_flop for c in costs), default=0.0),
        feasible=memory["fits"] and seconds <= FEASIBLE_SECONDS)
    report.cell_costs, report.machine, report.load_seconds = costs, machine, loading
    report.evaluations = _eval_rows(evals, costs, shape, policy, machine)
    report.cells = [cell_estimate(c, machine, opts.fsdp) for c in costs]
    report.warnings = machine.problems + warnings(report, policy, plan_reference=bool(reference))
    report.assumptions = assumptions(counter, data, costs, machine) + notes + data.notes
    return report
