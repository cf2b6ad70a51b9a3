"""Measure how far an audit's numbers move when only the float arithmetic changes.

Runs one audit under several settings that change which kernels run or how sums are
split (torch threads, deterministic algorithms, ATen's vectorised kernels, oneDNN, MKL's
reproducible mode), then compares every cell with the first setting's checkpoint by
checkpoint (certify.assess.agreement, the comparison `certify replay` uses) and the
verdicts check by check. With --write the table goes into docs/reliability.md.

    .venv/bin/python scripts/reproducibility.py --out runs/repro            # the demo audit
    .venv/bin/python scripts/reproducibility.py --out runs/repro --write

Finished settings are kept and skipped on a re-run (delete --out to measure again).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SETTINGS: dict[str, tuple[str, dict[str, str]]] = {
    # name: (Python run before the audit, environment)
    "default": ("", {}),
    "1 thread": ("torch.set_num_threads(1)", {"OMP_NUM_THREADS": "1"}),
    "deterministic": ("torch.use_deterministic_algorithms(True)", {}),
    "generic kernels": ("", {"ATEN_CPU_CAPABILITY": "default"}),
    "no oneDNN": ("torch.backends.mkldnn.enabled = False", {}),
    "MKL reproducible": ("", {"MKL_CBWR": "COMPATIBLE"}),
}
MARK = "reproducibility"


def run_setting(name: str, out: Path, audit_args: list[str]) -> Path:
    run_dir = out / name.replace(" ", "-")
    if (run_dir / "evidence.json").is_file():
        return run_dir
    prelude, env = SETTINGS[name]
    code = ("import torch\n" + prelude + "\nfrom certify.cli import main\n"
            f"main({[*audit_args, '--out', str(run_dir), '--quiet', '--format', 'md']!r})")
    base_env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    started = datetime.now(UTC)
    done = subprocess.run([sys.executable, "-c", code], env={**base_env, **env}, cwd=ROOT,
                          capture_output=True, text=True)
    if done.returncode not in (0, 1):
        sys.exit(f"{name}: audit exited {done.returncode}:\n{done.stderr[-2000:]}")
    print(f"{name}: {(datetime.now(UTC) - started).total_seconds():.0f} s", file=sys.stderr)
    return run_dir


def compare(runs: dict[str, Path]) -> dict[str, object]:
    from certify.assess.agreement import break_levels, compare_cell
    from certify.conductor.collect import policy_of
    from certify.evidence import Evidence
    from certify.policy.schema import Reproducibility

    evidence = {name: Evidence.read(d / "evidence.json") for name, d in runs.items()}
    base_name = next(iter(evidence))
    base = evidence[base_name]
    policy = policy_of(base)
    exact = Reproducibility(judged_share=0, judged_min=0, loss_rel=0, break_checkpoints=0)
    rows = []
    for name, ev in evidence.items():
        if name == base_name:
            continue
        verdicts = {c.id: c.verdict for c in ev.verdict.checks} if ev.verdict else {}
        base_verdicts = {c.id: c.verdict for c in base.verdict.checks} if base.verdict else {}
        flipped = sorted(k for k in base_verdicts if verdicts.get(k) != base_verdicts[k])
        count_moves, count_shares, loss_moves, break_moves = [], [], [], []
        cells_moved = 0
        for cell in base.cells:
            agreement = compare_cell(cell, ev.cell(cell.id), exact, break_levels(policy))
            moved = [r for r in agreement.rows if not r.agrees]
            cells_moved += bool(moved) or agreement.problem is not None
            for r in agreement.rows:
                if r.what == "loss":
                    loss_moves.append(r.moved)
                elif r.what.startswith("break@"):
                    break_moves.append(r.moved)
                elif r.moved != float("inf"):
                    count_moves.append(r.moved)
                    count_shares.append(r.moved / r.n if r.n else 0.0)
        rows.append({"setting": name, "overall": ev.verdict.overall if ev.verdict else None,
                     "verdicts_flipped": flipped, "cells_moved": cells_moved,
                     "cells": len(base.cells), "max_count_move": max(count_moves, default=0),
                     "max_count_share": max(count_shares, default=0),
                     "max_loss_rel": max(loss_moves, default=0),
                     "max_break_move": max(break_moves, default=0)})
    numerics = base.cells[0].numerics if base.cells else {}
    return {"base": base_name, "overall": base.verdict.overall if base.verdict else None,
            "policy": base.policy["id"], "model": base.models["candidate"]["spec"],
            "cpu": numerics.get("cpu"), "torch": numerics.get("torch"),
            "blas": numerics.get("blas"), "capability": numerics.get("cpu_capability"),
            "date": datetime.now(UTC).strftime("%Y-%m-%d"), "rows": rows}


def table(result: dict[str, object]) -> str:
    lines = [f"Produced by `python scripts/reproducibility.py` on {result['date']}: policy "
             f"`{result['policy']}`, candidate `{result['model']}`, {result['cpu']} "
             f"({platform.machine()}, kernels {result['capability']}, BLAS {result['blas']}), "
             f"torch {result['torch']}. Each setting is compared with `{result['base']}` "
             f"(verdict {str(result['overall']).upper()}), every cell checkpoint by checkpoint.",
             "",
             "| setting | verdict | checks flipped | cells that moved | largest judged-count move "
             "| largest loss move (relative) | largest break-point move (checkpoints) |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:  # type: ignore[attr-defined]
        flipped = r["verdicts_flipped"]
        named = f" ({', '.join(flipped)})" if flipped else ""
        lines.append(f"| {r['setting']} | {str(r['overall']).upper()} | {len(flipped)}{named}"
                     f" | {r['cells_moved']} of {r['cells']} | {r['max_count_move']:g} items "
                     f"({r['max_count_share']:.1%} of n) | {r['max_loss_rel']:.1e} | "
                     f"{_breaks(r['max_break_move'])} |")
    return "\n".join(lines)


def _breaks(moved: float) -> str:
    return "a cell broke in one run only" if moved == float("inf") else f"{moved:g}"


def write_doc(text: str, mark: str = MARK) -> None:
    doc = ROOT / "docs" / "reliability.md"
    body = doc.read_text(encoding="utf-8")
    start, end = f"<!-- figures:{mark}:start -->", f"<!-- figures:{mark}:end -->"
    if start not in body:
        sys.exit(f"{doc} has no {start} marker")
    head, rest = body.split(start, 1)
    doc.write_text(head + start + "\n" + text + "\n" + end + rest.split(end, 1)[1],
                   encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "reproducibility")
    parser.add_argument("--model", default="builtin:tiny-chat-immunized")
    parser.add_argument("--reference", default="builtin:tiny-chat")
    parser.add_argument("--policy", default="ci-smoke")
    parser.add_argument("--settings", default=",".join(SETTINGS),
                        help="comma-separated, the first is the base")
    parser.add_argument("--write", action="store_true", help="write docs/reliability.md")
    parser.add_argument("--mark", default=MARK,
                        help="which figure block of docs/reliability.md to write")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    audit = ["audit", args.model, "--policy", args.policy]
    if args.reference:
        audit += ["--reference", args.reference]
    names = [s.strip() for s in args.settings.split(",") if s.strip()]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        sys.exit(f"unknown settings {unknown}; choose from {list(SETTINGS)}")
    runs = {name: run_setting(name, args.out, audit) for name in names}
    result = compare(runs)
    print(json.dumps(result, indent=2) if args.json else table(result))
    if args.write:
        write_doc(table(result), args.mark)


if __name__ == "__main__":
    main()
