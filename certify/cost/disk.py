"""How much disk an audit's run directory needs, and whether its disk has that much free.

An audit that fills its disk stops with exit 3 after hours of work (the cells finished
so far are kept, but the user learns of the problem late). The need is known before
anything runs, from the same workload the cost preview reads (torch-free):

- the cell state kept for resume inside a cell (certify.run.cell_state): the trained
  weights and the optimizer's states of one cell, twice over while a newer state is
  written beside the older one before it replaces it (atomic writes);
- the per-sample records of every evaluation run (samples/<cell>.jsonl), the cell
  records and evidence.json, costed to every checkpoint (early stopping only saves);
- the reports, which embed the evidence (report.pdf) or show it (report.html).

The byte constants were read off a ci-smoke demo run (3.2 MB of samples for about 8,600
judged answers of up to 64 tokens; cells and evidence.json 0.4x the samples).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from certify.cost.workload import OPTIMIZER_STATES, CellCost, dtype_bytes

SAMPLE_BYTES = 128
"""One judged answer's record, outside the answer's own text."""
CHARS_PER_TOKEN = 4
RECORDS_SHARE = 0.5
"""Cell records and evidence.json, as a share of the samples (0.4 measured)."""
REPORT_BYTES = 8 << 20
"""report.pdf (fonts, plots), report.html, junit.xml and summary.md, beside the evidence
they embed (counted twice more)."""
LORA_SHARE = 0.02
"""Adapters' share of a model's parameters: an upper bound for rank <= 64 adapters on
every linear layer of a transformer of width >= 512 (rank 8 on tiny-chat is ~4%; its
state is a few hundred kilobytes)."""
MARGIN = 1.1


@dataclass(frozen=True)
class DiskNeed:
    state: float
    samples: float
    records: float
    reports: float

    @property
    def total(self) -> float:
        return MARGIN * (self.state + self.samples + self.records + self.reports)

    def parts(self) -> str:
        return ", ".join(f"{name} {size(value)}" for name, value in (
            ("cell state", self.state), ("samples", self.samples),
            ("records and evidence", self.records), ("reports", self.reports)) if value)


def size(n: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n:.0f} B"


def state_bytes(cell: CellCost, dtype: str) -> float:
    """One kept state of ``cell``: its trained tensors and their optimizer states."""
    if cell.mode == "eval":
        return 0.0
    trained = cell.n_params * (1.0 if cell.mode == "full" else LORA_SHARE)
    return trained * dtype_bytes(dtype) * (1 + OPTIMIZER_STATES.get(cell.optimizer, 2))


def disk_need(costs: list[CellCost], dtype: str, keep_state: bool) -> DiskNeed:
    """What the run directory of these cells needs at most."""
    samples = sum(e.items * (SAMPLE_BYTES + CHARS_PER_TOKEN * e.new_tokens)
                  for c in costs for _, e in c.eval_runs)
    state = 2 * max((state_bytes(c, dtype) for c in costs), default=0.0) if keep_state else 0
    records = RECORDS_SHARE * samples
    return DiskNeed(state, samples, records, REPORT_BYTES + 2 * records)


def free_bytes(path: Path) -> int:
    """Free bytes on the filesystem that holds (or will hold) ``path``."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return int(shutil.disk_usage(path).free)


def check_disk(path: Path, need: DiskNeed,
               free: Callable[[Path], int] = free_bytes) -> None:
    """Refuse (exit 2) when the disk holding ``path`` has less free space than ``need``."""
    from certify.errors import RunDirError

    available = free(path)
    if available >= need.total:
        return
    raise RunDirError(
        f"not enough disk for the run directory {path}: {size(available)} free, the audit "
        f"needs about {size(need.total)} ({need.parts()})",
        hint="free disk space, give --out on a larger disk, or turn off the in-cell resume "
             "state with --cell-state off" if need.state else
             "free disk space or give --out on a larger disk")


def audit_disk_need(opts: Any, keep_state: bool) -> DiskNeed:
    """The need of the audit ``opts`` describes (its plan, read as the dry run reads it)."""
    from certify.cost.preview import workload

    index, count = opts.shard or (0, 1)
    return disk_need(workload(opts).costs[index::count], opts.dtype, keep_state)
