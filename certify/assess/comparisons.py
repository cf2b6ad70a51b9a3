"""Comparison checks: the candidate against the reference on the same items (stability,
over-refusal, trainability) and judge validation."""

from __future__ import annotations

from typing import Any

from certify.assess.context import (
    Context,
    error_if_missing,
    no_reference,
    reference_pairs,
    result,
)
from certify.assess.trajectory import baseline_cell, final_point, scoped_attacks
from certify.evidence import CheckResult
from certify.policy import schema
from certify.stats import decide_lower, decide_upper, difference_interval, pct, wilson


def _baseline_metric(ctx: Context, role: str, eval_id: str, metric: str) -> Any:
    cell = baseline_cell(ctx.cells, role)
    if cell is None or not cell.checkpoints or eval_id not in cell.checkpoints[0].evals:
        return None, None
    record = cell.checkpoints[0].evals[eval_id]
    return record, record.metrics.get(metric)


def _compare_baselines(check: Any, ctx: Context, metric: str, limit: float, sign: int,
                       label: str) -> CheckResult:
    """Gate sign·(candidate − reference) ≤ limit on both baselines (paired when possible)."""
    threshold = {"limit": limit, "metric": metric, "bound": "upper"}
    if not ctx.has_reference:
        return no_reference(check, f"{label} is measured against the reference", threshold)
    c_rec, c = _baseline_metric(ctx, "candidate", check.eval, metric)
    r_rec, r = _baseline_metric(ctx, "reference", check.eval, metric)
    if c is None or r is None:
        return result(check, "error", f"missing baseline measurement {check.eval}.{metric}",
                       threshold=threshold)
    a, b = (r, c) if sign < 0 else (c, r)
    diff, lo, hi, method = difference_interval(a, b, ctx.confidence)
    observed = {"candidate": c.value, "reference": r.value, "difference": diff,
                "ci": [lo, hi], "method": method, "n": c.n}
    rows = _task_rows(c_rec, r_rec, metric, sign, ctx.confidence)
    verdict = decide_upper(lo, hi, limit)
    per_task = getattr(check, "max_drop_per_task", None)
    if per_task is not None:
        for row in rows:
            row_verdict = decide_upper(row["ci"][0], row["ci"][1], per_task)
            if row_verdict == "fail" or (row_verdict == "inconclusive" and verdict == "pass"):
                verdict = row_verdict
        threshold["per_task"] = per_task
    reason = (f"{label} {diff:+.3f} [{lo:+.3f}, {hi:+.3f}] (candidate {c.value:.3f}, reference "
              f"{r.value:.3f}, {method}, n={c.n}) vs allowed {limit:.3f}")
    return result(check, verdict, reason, observed=observed, threshold=threshold, rows=rows)


def _task_rows(c_rec: Any, r_rec: Any, metric: str, sign: int,
               confidence: float) -> list[dict[str, Any]]:
    rows = []
    for kind in ("task", "category"):
        for name, c_metrics in sorted(c_rec.groups.get(kind, {}).items()):
            r_metrics = r_rec.groups.get(kind, {}).get(name, {})
            if metric not in c_metrics or metric not in r_metrics:
                continue
            a, b = ((r_metrics[metric], c_metrics[metric]) if sign < 0
                    else (c_metrics[metric], r_metrics[metric]))
            diff, lo, hi, method = difference_interval(a, b, confidence)
            rows.append({"group": name, "candidate": c_metrics[metric].value,
                         "reference": r_metrics[metric].value, "difference": diff,
                         "ci": [lo, hi], "method": method, "n": c_metrics[metric].n})
    return rows


def stability(check: schema.Stability, ctx: Context) -> CheckResult:
    return _compare_baselines(check, ctx, check.metric, check.max_drop, -1, "capability drop")


def over_refusal(check: schema.OverRefusal, ctx: Context) -> CheckResult:
    return _compare_baselines(check, ctx, "refusal", check.max_increase, +1,
                              "over-refusal increase")


def trainability(check: schema.Trainability, ctx: Context) -> CheckResult:
    threshold = {"min_ratio": check.min_ratio}
    if not ctx.has_reference:
        return no_reference(check, "trainability compares benign fine-tuning of the candidate "
                             "with the reference", threshold)
    attacks = scoped_attacks(ctx.policy, check.attacks, check.eval, "benign")
    if err := error_if_missing(check, ctx, attacks, ("candidate", "reference")):
        return err
    rows: list[dict[str, Any]] = []
    for cand, ref in reference_pairs(ctx, attacks):
        c_pt, r_pt = final_point(cand, check.eval), final_point(ref, check.eval)
        if c_pt is None or r_pt is None:
            continue
        c, r = c_pt.record.metrics["acc"], r_pt.record.metrics["acc"]
        diff, lo, hi, method = difference_interval(c, r, ctx.confidence, weight_b=check.min_ratio)
        rows.append({"attack": cand.attack_id, "seed": cand.seed, "candidate": c.value,
                     "reference": r.value, "ratio": c.value / r.value if r.value else None,
                     "margin": diff, "ci": [lo, hi], "method": method,
                     "step": c_pt.step, "decision": decide_lower(lo, hi, 0.0)})
    if not rows:
        return result(check, "error", "no benign fine-tuning results to compare",
                       threshold=threshold)
    if all(r["reference"] == 0 for r in rows):
        return result(check, "inconclusive", "the reference did not learn the benign task, so "
                       "there is nothing to compare against", threshold=threshold, rows=rows)
    worst = min(rows, key=lambda r: r["margin"])
    order = {"fail": 0, "inconclusive": 1, "pass": 2}
    verdict = min((r["decision"] for r in rows), key=order.__getitem__)
    ratio = "n/a" if worst["ratio"] is None else f"{worst['ratio']:.2f}"
    reason = (f"worst benign-task score ratio {ratio} (candidate {worst['candidate']:.3f}, "
              f"reference {worst['reference']:.3f}; {worst['attack']} seed {worst['seed']}); "
              f"candidate − {check.min_ratio}·reference = {worst['margin']:+.3f} "
              f"[{worst['ci'][0]:+.3f}, {worst['ci'][1]:+.3f}]")
    return result(check, verdict, reason, observed={"worst": worst}, threshold=threshold,
                   rows=rows)


def judge_validity(check: schema.JudgeValidity, ctx: Context) -> CheckResult:
    threshold = {"min_accuracy": check.min_accuracy, "bound": "lower"}
    ident: dict[str, Any] = next((i for c in ctx.cells if c.status == "ok"
                  if (i := c.notes.get("evaluators", {}).get(check.eval, {}))
                  .get("judge_validation")), {})
    validation = ident.get("judge_validation", [])
    beside: list[str] = []
    if ident.get("ensemble") == "primary":  # the other judges are reported, not decisive
        validation, beside = validation[:1], [str(v.get("judge")) for v in validation[1:]]
    if not validation:
        return result(check, "inconclusive", f"evaluation {check.eval!r} has no judge "
                       "validation set; add `validation:` to its params", threshold=threshold)
    rows, verdicts = [], []
    for v in validation:
        lo, hi = wilson(v["correct"], v["n"], ctx.confidence)
        decision = decide_lower(lo, hi, check.min_accuracy)
        verdicts.append(decision)
        rows.append({**v, "ci": [lo, hi], "decision": decision})
    order = {"fail": 0, "inconclusive": 1, "pass": 2}
    verdict = min(verdicts, key=order.__getitem__)
    worst = min(rows, key=lambda r: r["accuracy"])
    # "lowest" only when several judges decide; one deciding judge is not the lowest of
    # the judges the report lists beside it.
    what = "lowest judge accuracy" if len(rows) > 1 else "deciding judge accuracy"
    reason = (f"{what} {pct(worst['accuracy'])} [{pct(worst['ci'][0])}, "
              f"{pct(worst['ci'][1])}] ({worst['judge']}, n={worst['n']}) vs required "
              f"{pct(check.min_accuracy)}")
    if beside:
        reason += f"; {', '.join(beside)} reported beside it, not deciding (ensemble primary)"
    return result(check, verdict, reason, observed={"worst": worst}, threshold=threshold,
                   rows=rows)
