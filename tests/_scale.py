"""Helpers shared by the scale tests (shards and merge, Ray, early stopping)."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any

from certify.evidence import Evidence
from tests.conftest import ROOT

SCALE_POLICY = str(ROOT / "tests" / "policies" / "scale-tiny.yaml")
_RUNS: dict[str, tuple[Path, int]] = {}
_ROOT: list[Path] = []


def audit_once(name: str, **options: Any) -> tuple[Path, int]:
    """Run (once per test session) an in-process audit of builtin:tiny-chat; (run dir, exit)."""
    if name not in _RUNS:
        from certify.conductor import AuditOptions, audit

        if not _ROOT:
            _ROOT.append(Path(tempfile.mkdtemp(prefix="certify-scale-")))
            atexit.register(shutil.rmtree, _ROOT[0], ignore_errors=True)
        out = _ROOT[0] / name
        opts = AuditOptions(model="builtin:tiny-chat", policy=SCALE_POLICY, out=out,
                            formats=("md",), **options)
        result = audit(opts)
        _RUNS[name] = (result.run_dir, result.exit_code)
    return _RUNS[name]


def cell_metrics(ev: Evidence) -> dict[str, Any]:
    """Per cell: every checkpoint's step, cost, loss (4 decimals) and metrics (k, n, value)."""
    return {c.id: {"status": c.status, "early_stop": c.early_stop and c.early_stop.step,
                   "checkpoints": [
                       (cp.step, cp.samples, cp.tokens, _round(cp.loss),
                        {e: {k: (m.k, m.n, m.value) for k, m in r.metrics.items()}
                         for e, r in cp.evals.items()})
                       for cp in c.checkpoints]}
            for c in ev.cells}


def _round(loss: float | None) -> float | None:
    return None if loss is None else round(loss, 4)


def check_verdicts(ev: Evidence) -> dict[str, str]:
    assert ev.verdict is not None
    return {c.id: c.verdict for c in ev.verdict.checks}
