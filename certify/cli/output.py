"""Terminal rendering of verdicts (rich tables on a TTY, plain text otherwise)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from certify.evidence import Evidence
from certify.policy.schema import condition_name

COLORS = {"pass": "green", "fail": "red", "inconclusive": "yellow", "error": "magenta"}


def summary_json(evidence: Evidence, run_dir: Path, outputs: dict[str, Path]) -> dict[str, Any]:
    v = evidence.verdict
    assert v is not None
    return {"verdict": v.overall, "exit_code": v.exit_code, "run_dir": str(run_dir),
            "policy": evidence.policy["id"], "model": evidence.models["candidate"],
            "conditions": v.conditions,
            "checks": [{"id": c.id, "check": c.check, "condition": c.condition,
                        "required": c.required, "verdict": c.verdict, "reason": c.reason}
                       for c in v.checks],
            "outputs": {k: str(p) for k, p in outputs.items()}, "scope": evidence.scope}


def print_verdict(evidence: Evidence, run_dir: Path, outputs: dict[str, Path]) -> None:
    from rich.console import Console
    from rich.table import Table

    v = evidence.verdict
    assert v is not None
    candidate = evidence.models["candidate"]
    assert candidate is not None  # every run has a candidate
    console = Console(highlight=False, soft_wrap=False)
    table = Table(title=f"certify · policy {evidence.policy['id']} · "
                        f"{candidate['spec']}", show_lines=False)
    table.add_column("check")
    table.add_column("condition")
    table.add_column("verdict")
    table.add_column("evidence", overflow="fold")
    for c in v.checks:
        color = COLORS[c.verdict]
        optional = "" if c.required else " (optional)"
        table.add_row(c.id, condition_name(c.condition).lower(),
                      f"[{color}]{c.verdict.upper()}[/]{optional}", c.reason)
    console.print(table)
    errored = [cell for cell in evidence.cells if cell.status == "error"]
    for cell in errored[:5]:
        err = cell.error
        console.print(f"[magenta]cell {cell.id} errored[/]: {err.kind if err else ''}: "
                      f"{err.message if err else ''}")
    color = COLORS[v.overall]
    console.print(f"\n[bold {color}]{v.overall.upper()}[/] (exit {v.exit_code}) — {v.summary}")
    console.print(f"[dim]{evidence.scope}[/]")
    console.print(f"run directory: {run_dir}")
    for name, path in outputs.items():
        console.print(f"  {name}: {path}")


