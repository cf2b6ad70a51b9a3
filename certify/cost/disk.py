"""How much disk an audit's run directory needs, and whether its disk has that much free.

An audit that fills its disk stops with exit 3 after hours of work (the cells finished
so far are kept, but the user learns of the problem late). The need is known before
anything runs, from the same workload the cost preview reads (torch-free):

- the cell state kept for resume inside a cell (certify.run.cell_state): the trained
  weights and the optimizer's states of one cell, twice over while a newer state is
  written beside the older one before it replaces it (atomic writes; an FSDP-sharded
  cell's ranks together keep the same, each its shards);
- the per-sample records of every evaluation run (samples/<cell>.jsonl), the cell
  records and evidence.json, costed to every checkpoint (early stopping only saves);
- the reports, which embed the evidence (report.pdf) or show it (report.html).

On a resume (``OnDisk``: what the earlier attempt left in the run directory) only the
cells still to run need room: the finished cells' samples and records are on the disk
already, and a cell that kept a state needs room for one more beside it, not two. The
reports and evidence.json are written again for every cell, so they count in full.

The byte constants were read off a ci-smoke demo run (3.2 MB of samples for about 8,600
judged answers of up to 64 tokens; cells and evidence.json 0.4x the samples).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class OnDisk:
    """What an earlier attempt of a run left in its run directory (read by the conductor,
    which knows the run directory's layout)."""

    digests: dict[str, str | None]
    """Role -> the model's root digest the run was planned under (its manifest), so the
    cells planned here carry the run's own ids."""
    finished: frozenset[str] = field(default_factory=frozenset)
    """Ids of the cells with a result."""
    kept: frozenset[str] = field(default_factory=frozenset)
    """Ids of the cells with a kept state (resume inside a cell)."""


def _samples(cell: CellCost) -> float:
    return sum(e.items * (SAMPLE_BYTES + CHARS_PER_TOKEN * e.new_tokens)
               for _, e in cell.eval_runs if e.kind != "edit")


def disk_need(costs: list[CellCost], dtype: str, keep_state: bool,
              on_disk: OnDisk | None = None) -> DiskNeed:
    """What the run directory of these cells needs at most, beyond what ``on_disk``
    (a resumed run's finished cells and kept states) already holds."""
    finished = on_disk.finished if on_disk else frozenset()
    kept = on_disk.kept if on_disk else frozenset()
    pending = [c for c in costs if c.cell_id not in finished]
    samples = sum(_samples(c) for c in pending)
    # A new state is written beside the one it replaces: two at once, or one more where
    # the older one is already on the disk.
    state = max((state_bytes(c, dtype) * (1 if c.cell_id in kept else 2) for c in pending),
                default=0.0) if keep_state else 0.0
    every = RECORDS_SHARE * sum(_samples(c) for c in costs)  # evidence.json: every cell
    return DiskNeed(state, samples, RECORDS_SHARE * samples, REPORT_BYTES + 2 * every)


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


def audit_disk_need(opts: Any, keep_state: bool, on_disk: OnDisk | None = None) -> DiskNeed:
    """The need of the audit ``opts`` describes (its plan, read as the dry run reads it),
    or of what is left of it when ``on_disk`` says what an earlier attempt finished."""
    from certify.cost.preview import workload

    index, count = opts.shard or (0, 1)
    costs = workload(opts, on_disk.digests if on_disk else None).costs[index::count]
    return disk_need(costs, opts.dtype, keep_state, on_disk)
