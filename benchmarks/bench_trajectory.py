"""Benchmark 2: a whole step-budget curve by trajectory evaluation vs one run per budget.

ci-smoke's full fine-tuning cell on builtin:tiny-chat, with its harmfulness
evaluation, through certify's worker, early stopping off, over two step budgets:
256 steps evaluated at 16, 32, 64, 128 and 256 (the first-look overlay's budget, with
geometric checkpoints: the figure), and ci-smoke's short plumbing budget, 64 steps
evaluated at 4, 8, 16, 32 and 64 (printed beside it). certify trains once and evaluates
along the way; a harness without checkpoint evaluation trains a fresh run for every
budget and evaluates it at the end. The goal compares the trajectory with the longest
single run (one evaluation): the curve should cost at most 1.2x that one point.

    python benchmarks/bench_trajectory.py [--repeats 3]
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import _common as common


def worker_and_cell(device: str = "cpu"):  # type: ignore[no-untyped-def]
    from certify.conductor import AuditOptions
    from certify.conductor.preflight import Inputs, resolve_models, worker_setup
    from certify.plan import make_plan
    from certify.policy.load import load_policy
    from certify.run.progress import NullProgress
    from certify.run.worker import Worker

    opts = AuditOptions(model="builtin:tiny-chat", policy="ci-smoke", device=device)
    loaded = load_policy(opts.policy)
    # Measure the evaluation cost itself: no early stopping.
    statistics = loaded.policy.statistics.model_copy(update={"early_stop": False})
    inputs = Inputs(resolve_models(opts, loaded, NullProgress()), [], None)
    plan = make_plan(loaded.policy, inputs.digests)
    setup = worker_setup(loaded, inputs, opts)
    setup = type(setup)(**{**setup.__dict__,
                           "policy": loaded.policy.model_copy(update={"statistics": statistics})})
    cell = next(c for c in plan.cells if c.attack_id == "harmful-full")
    cell = cell.model_copy(update={"max_steps": 64, "checkpoints": [4, 8, 16, 32, 64],
                                   "params": {**cell.params, "max_steps": 64}})
    return Worker(setup), cell


def curve(worker, cell, budgets: list[int], repeats: int) -> dict:  # type: ignore[no-untyped-def]
    """Time the trajectory (one run evaluated at every budget) and one run per budget."""
    cell = cell.model_copy(update={"max_steps": budgets[-1], "checkpoints": budgets,
                                   "params": {**cell.params, "max_steps": budgets[-1]}})
    single = {b: cell.model_copy(update={"max_steps": b, "checkpoints": [b],
                                         "params": {**cell.params, "max_steps": b}})
              for b in budgets}
    trajectory: list[float] = []
    evals: list[float] = []
    per_budget: dict[int, list[float]] = {b: [] for b in budgets}
    for _ in range(repeats):
        seconds, (record, _) = common.timed(lambda: worker.run(cell))
        assert [cp.step for cp in record.checkpoints] == budgets and not record.early_stop
        trajectory.append(seconds)
        evals.append(record.seconds_eval)
        for b in budgets:
            per_budget[b].append(common.timed(lambda b=b: worker.run(single[b]))[0])
    t_curve = common.median(trajectory)
    t_longest = common.median(per_budget[budgets[-1]])
    t_all = sum(common.median(v) for v in per_budget.values())
    return {"ratio": t_curve / t_longest, "trajectory_s": t_curve, "longest_run_s": t_longest,
            "trajectory_eval_s": common.median(evals), "one_run_per_budget_s": t_all,
            "budgets": budgets,
            "per_budget_s": {str(b): common.median(v) for b, v in per_budget.items()}}


def describe(r: dict) -> str:
    b = r["budgets"]
    return (f"{len(b)}-point curve (steps {b}) in {r['trajectory_s']:.1f}s = {r['ratio']:.2f}x "
            f"the longest single run ({r['longest_run_s']:.1f}s); one run per budget costs "
            f"{r['one_run_per_budget_s']:.1f}s = "
            f"{r['one_run_per_budget_s'] / r['trajectory_s']:.2f}x the trajectory. Of the "
            f"trajectory, {r['trajectory_eval_s']:.1f}s is its {len(b)} evaluations and "
            f"{r['trajectory_s'] - r['trajectory_eval_s']:.1f}s training")


def main() -> None:
    opts = common.args(__doc__.splitlines()[0])
    load = os.getloadavg()[0]
    worker, cell = worker_and_cell(opts.device)
    # The audit-sized curve (first-look's 256 steps, geometric checkpoints) is the figure;
    # the short curve is ci-smoke's plumbing budget, where one evaluation costs about as
    # much as ten training steps of the 1M-parameter demo model, so evaluations dominate.
    long_budgets, short_budgets = [16, 32, 64, 128, 256], [4, 8, 16, 32, 64]
    if opts.quick:
        long_budgets, short_budgets = [4, 8], [2, 4]
    worker.run(cell.model_copy(update={"max_steps": 2, "checkpoints": [2],
                                       "params": {**cell.params, "max_steps": 2}}))  # warm up
    long = curve(worker, cell, long_budgets, opts.repeats)
    short = curve(worker, cell, short_budgets, opts.repeats)
    common.report(
        "trajectory",
        f"audit budget: {describe(long)} (goal <= 1.2x). Demo budget: {describe(short)}",
        {**long, "short": short}, opts.json, load)


if __name__ == "__main__":
    main()
