"""Benchmark 2: a whole step-budget curve by trajectory evaluation vs one run per budget.

ci-smoke's full fine-tuning cell on builtin:tiny-chat, with its harmfulness
evaluation, run for 64 steps and evaluated at steps 4, 8, 16, 32 and 64 (fixed
here, whatever ci-smoke's own checkpoints are), through certify's worker, early
stopping off. certify trains once and evaluates along the way; a harness without checkpoint
evaluation trains a fresh run for every budget and evaluates it at the end. The
goal compares the trajectory with the longest single run (64 steps, one
evaluation): the curve should cost at most 1.2x that one point.

    python benchmarks/bench_trajectory.py [--repeats 3]
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import _common as common


def worker_and_cell(device: str = "cpu"):  # type: ignore[no-untyped-def]
    from certify.plan import make_plan
    from certify.policy.load import load_policy
    from certify.run.audit import AuditOptions, resolve_models, worker_setup
    from certify.run.progress import NullProgress
    from certify.run.worker import Worker

    opts = AuditOptions(model="builtin:tiny-chat", policy="ci-smoke", device=device)
    loaded = load_policy(opts.policy)
    effective = loaded.effective
    effective["statistics"]["early_stop"] = False  # measure the evaluation cost itself
    models = resolve_models(opts, loaded, NullProgress())
    plan = make_plan(loaded.policy, {r: i.root_digest for r, (_, i) in models.items()})
    setup = worker_setup(loaded, models, opts)
    setup = type(setup)(**{**setup.__dict__, "policy": effective})
    cell = next(c for c in plan.cells if c.attack_id == "harmful-full")
    cell = cell.model_copy(update={"max_steps": 64, "checkpoints": [4, 8, 16, 32, 64],
                                   "params": {**cell.params, "max_steps": 64}})
    return Worker(setup), cell


def main() -> None:
    opts = common.args(__doc__.splitlines()[0])
    load = os.getloadavg()[0]
    worker, cell = worker_and_cell(opts.device)
    if opts.quick:
        cell = cell.model_copy(update={"max_steps": 8, "checkpoints": [4, 8],
                                       "params": {**cell.params, "max_steps": 8}})
    budgets = cell.checkpoints
    single = {b: cell.model_copy(update={"max_steps": b, "checkpoints": [b],
                                         "params": {**cell.params, "max_steps": b}})
              for b in budgets}
    worker.run(single[budgets[0]])  # load the model, build the evaluators
    trajectory: list[float] = []
    evals: list[float] = []
    per_budget: dict[int, list[float]] = {b: [] for b in budgets}
    for _ in range(opts.repeats):
        seconds, (record, _) = common.timed(lambda: worker.run(cell))
        assert [cp.step for cp in record.checkpoints] == budgets and not record.early_stop
        trajectory.append(seconds)
        evals.append(record.seconds_eval)
        for b in budgets:
            per_budget[b].append(common.timed(lambda b=b: worker.run(single[b]))[0])
    t_curve = common.median(trajectory)
    t_longest = common.median(per_budget[budgets[-1]])
    t_all = sum(common.median(v) for v in per_budget.values())
    ratio = t_curve / t_longest
    t_eval = common.median(evals)
    common.report(
        "trajectory",
        f"{len(budgets)}-point curve (steps {budgets}) in {t_curve:.1f}s = {ratio:.2f}x the "
        f"longest single run ({t_longest:.1f}s; goal <= 1.2x); one run per budget costs "
        f"{t_all:.1f}s = {t_all / t_curve:.2f}x the trajectory. Of the trajectory, "
        f"{t_eval:.1f}s is its {len(budgets)} evaluations and {t_curve - t_eval:.1f}s is "
        "training; single runs: " + ", ".join(
            f"{b} steps {common.median(v):.1f}s" for b, v in per_budget.items()),
        {"ratio": ratio, "trajectory_s": t_curve, "longest_run_s": t_longest,
         "trajectory_eval_s": t_eval,
         "one_run_per_budget_s": t_all, "budgets": budgets,
         "per_budget_s": {str(b): common.median(v) for b, v in per_budget.items()}},
        opts.json, load)


if __name__ == "__main__":
    main()
