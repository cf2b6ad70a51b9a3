"""Run the seven benchmarks, each in a fresh process, and write benchmarks/RESULTS.md.

    python benchmarks/run_all.py                 # print the figures
    python benchmarks/run_all.py --write         # and rewrite benchmarks/RESULTS.md
    python benchmarks/run_all.py --only generate --quick
    python benchmarks/run_all.py --write --device cuda      # on a GPU machine

Timings depend on the machine and on what else runs on it: run on a quiet machine
(the load average before and after each benchmark is recorded next to its figure).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = [
    # (script, figure, goal, test of the ratio against the goal)
    ("bench_train.py", "1. Attack training throughput, certify loop vs HF Trainer (tokens/s)",
     ">= 1.0x", lambda r: r >= 1.0),
    ("bench_trajectory.py", "2. Step-budget curve (256 steps, 5 points): trajectory evaluation "
     "vs the longest single run", "<= 1.2x", lambda r: r <= 1.2),
    ("bench_generate.py", "3. Harmfulness eval: batched vs one-at-a-time generation", ">= 5x",
     lambda r: r >= 5),
    ("bench_restore.py", "4. Between cells: snapshot restore vs reload from disk", "faster "
     "(> 1x)", lambda r: r > 1),
    ("bench_flops.py", "5. Achieved training FLOP/s vs measured matmul peak (~100M model)",
     "(report)", None),
    ("bench_startup.py", "6. `certify --help` vs `import torch`; ci-smoke audit peak RSS",
     "no torch", None),
    ("bench_cost_preview.py", "7. Dry-run time estimate vs a real ci-smoke audit (measured / "
     "estimate, median over cells)", "0.7x-1.3x", lambda r: 0.7 <= r <= 1.3),
    ("bench_knowledge_eval.py", "8. Knowledge eval (lm-eval log-likelihood) vs harmfulness eval "
     "(generation), seconds per checkpoint, same model and item count", ">= 3x",
     lambda r: r >= 3),
    ("bench_attack_families.py", "9. One cell per attack family on tiny-chat, side by side "
     "(figure: refusal_ablation / sft seconds; every family in the printed line)", "(report)",
     None),
    ("bench_search.py", "10. Worst-case search: trials to break the demo reference, random "
     "over TPE (median over 3 seeds, 8-trial budget)", "(report)", None),
]
KEPT = "## Cost preview: estimate vs measured"
"""RESULTS.md keeps its hand-written section from this heading on when it is rewritten."""


def run_one(script: str, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, str(HERE / script), "--json", str(out), *extra]
        proc = subprocess.run(cmd, cwd=HERE.parent, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{script} failed:\n{proc.stderr[-3000:]}")
        print(proc.stdout.strip(), flush=True)
        return json.loads(out.read_text())


def markdown(rows: list[tuple[str, str, str, str | None, dict]], started: str,
             note: str, device: str) -> str:
    first = rows[0][4]["machine"]
    loads = [f"{r[4]['machine']['load_avg_1m_before']:.1f}→{r[4]['machine']['load_avg_1m']:.1f}"
             for r in rows]
    lines = [
        "# certify benchmarks", "",
        f"Measured {started} on {first['cpu']} ({first['cores']} cores), Python "
        f"{first['python']}, torch {first.get('torch', '?')}, "
        f"{first.get('torch_threads', '?')} torch thread(s), no GPU."
        if not first.get("cuda") else
        f"Measured {started} on {first['cpu']} with {first.get('gpu')}.", "",
        "Each figure is a ratio of two things measured side by side in one process "
        "(alternating, median of the repeats). Regenerate this file with "
        "`python benchmarks/run_all.py --write` (about 15 minutes on 2 cores); each line's "
        "command runs one benchmark alone.", "",
        f"1-minute load average before → after each benchmark: {', '.join(loads)}.", "",
        *([note, ""] if note else []),
        *(["GPU figures: not measured (no GPU was available for this run). On a GPU "
           "machine: `python benchmarks/run_all.py --write --device cuda`.", ""]
          if device == "cpu" else []),
        "| figure | result | goal | met | command |", "|---|---|---|---|---|"]
    for script, figure, goal, met, data in rows:
        flag = "" if device == "cpu" else f" --device {device}"
        lines.append(f"| {figure} | {data['results']['ratio']:.2f}x | {goal} | "
                     f"{met or '—'} | `python benchmarks/{script}{flag}` |")
    lines += ["", "## What each benchmark printed", ""]
    for script, _, _, _, data in rows:
        lines.append(f"- `{script}`: {data['line']}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite benchmarks/RESULTS.md")
    parser.add_argument("--only", default=None, help="run only scripts whose name has this")
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--note", default="", help="a sentence for RESULTS.md (conditions)")
    opts = parser.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    extra = (["--quick"] if opts.quick else []) + ["--device", opts.device]
    rows = []
    for script, figure, goal, test in BENCHMARKS:
        if opts.only and opts.only not in script:
            continue
        data = run_one(script, extra)
        met = None if test is None else ("yes" if test(data["results"]["ratio"]) else "no")
        rows.append((script, figure, goal, met, data))
    if opts.write:
        old = (HERE / "RESULTS.md").read_text(encoding="utf-8")
        kept = old[old.index(KEPT):] if KEPT in old else ""
        (HERE / "RESULTS.md").write_text(markdown(rows, started, opts.note, opts.device)
                                         + ("\n" + kept if kept else ""), encoding="utf-8")
        raw = {script: data for script, _, _, _, data in rows}
        (HERE / "results.json").write_text(json.dumps(raw, indent=2, sort_keys=True) + "\n")
        print(f"wrote {HERE / 'RESULTS.md'} and results.json")


if __name__ == "__main__":
    os.environ.setdefault("TQDM_DISABLE", "1")
    main()
