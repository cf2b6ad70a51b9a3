#!/usr/bin/env python3
"""Compare two audits' evidence.json: same verdicts, numbers and samples, timing aside.

    .venv/bin/python scripts/compare_evidence.py BEFORE_RUN_DIR AFTER_RUN_DIR

Compared: the overall verdict and every check's verdict, reason, observed values,
threshold and rows; the cell ids; per cell its status, early stop, trainable
parameters, samples_sha256, and per checkpoint its step, samples, tokens, FLOP, loss
and every evaluation's metrics and breakdowns. Not compared: timestamps, seconds,
hostnames, run ids and the environment. Exits 0 when identical, 1 otherwise.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

TIMING = {"seconds", "seconds_eval", "started", "finished", "worker"}


def _checkpoint(cp: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in cp.items() if k not in TIMING}


def _cell(cell: dict[str, Any]) -> dict[str, Any]:
    keep = ("status", "error", "early_stop", "n_parameters", "n_trainable", "train_categories",
            "samples_sha256", "params", "seed", "max_steps")
    return {**{k: cell.get(k) for k in keep},
            "checkpoints": [_checkpoint(cp) for cp in cell.get("checkpoints", [])]}


def summary(path: Path) -> dict[str, Any]:
    ev = json.loads((path / "evidence.json").read_text())
    verdict = ev.get("verdict") or {}
    return {
        "overall": verdict.get("overall"),
        "conditions": verdict.get("conditions"),
        "checks": {c["id"]: {k: c[k] for k in ("verdict", "reason", "observed", "threshold",
                                               "rows")} for c in verdict.get("checks", [])},
        "cells": {c["id"]: _cell(c) for c in ev["cells"]},
        "scope": ev.get("scope"),
    }


def differences(a: Any, b: Any, where: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b), key=str):
            if key not in a or key not in b:
                out.append(f"{where}.{key}: only in {'after' if key in b else 'before'}")
            else:
                out += differences(a[key], b[key], f"{where}.{key}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True))
                for d in differences(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where}: {str(a)[:120]} != {str(b)[:120]}"]


def main(before: str, after: str) -> int:
    old, new = summary(Path(before)), summary(Path(after))
    diffs = differences(old, new)
    checkpoints = sum(len(c["checkpoints"]) for c in old["cells"].values())
    print(f"before: {old['overall']}, {len(old['checks'])} checks, {len(old['cells'])} cells, "
          f"{checkpoints} checkpoints")
    for check_id, check in old["checks"].items():
        print(f"  {check_id:<22} {check['verdict']:<13} "
              f"{'same' if check == new['checks'].get(check_id) else 'DIFFERENT'}")
    for cell_id, cell in old["cells"].items():
        other = new["cells"].get(cell_id, {})
        print(f"  {cell_id:<28} samples {str(cell['samples_sha256'])[:12]} "
              f"{'same' if cell == other else 'DIFFERENT'}")
    if diffs:
        print(f"{len(diffs)} difference(s):")
        for d in diffs[:50]:
            print(f"  {d}")
        return 1
    print("identical: verdicts, observed values, cell ids, samples digests and per-checkpoint "
          "metrics")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
