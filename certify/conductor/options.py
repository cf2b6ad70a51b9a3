"""What an audit is asked to do (the CLI's options as data) and what it hands back."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from certify.evidence import Evidence


@dataclass
class AuditOptions:
    model: str
    policy: str
    reference: str | None = None
    out: Path | None = None
    overlays: tuple[str, ...] = ()
    revision: str | None = None
    reference_revision: str | None = None
    executor: str = "local"
    ray_address: str | None = None
    shard: tuple[int, int] | None = None
    device: str = "cpu"
    fsdp: int = 1
    """Processes (GPUs with --device cuda) that train each full fine-tuning cell (FSDP)."""
    dtype: str = "float32"
    autocast: str | None = None
    gradient_checkpointing: bool = False
    trust_remote_code: bool = False
    allow_pickle: bool = False
    allow_drift: bool = False
    key: Path | None = None
    formats: tuple[str, ...] = ("pdf", "html", "junit", "md")
    command: str = ""
    cell_state: str = "auto"
    """Keep each cell's training state at its checkpoints (resume inside a cell): on, off,
    or auto (on when the cost model estimates a cell over a few minutes)."""
    calibrate: bool = True
    """--dry-run: time the model itself on this machine (certify.cost.calibrate)."""


@dataclass
class RunResult:
    """A finished audit or merge: its run directory, evidence and the files written."""

    run_dir: Path
    evidence: Evidence
    outputs: dict[str, Path] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return self.evidence.verdict.exit_code if self.evidence.verdict else 3


def default_out(policy_id: str, model: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", model.replace("builtin:", "")).strip("-")[:60]
    return Path("runs") / f"{policy_id}--{slug or 'model'}"
