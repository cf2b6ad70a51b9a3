"""Resume inside a cell: the state a cell keeps at each evaluated checkpoint.

A cell of a real model trains for minutes to hours; a kill (preemption, a CI timeout,
SIGKILL) would otherwise lose all of it, since finished cells are the run directory's
only unit of resume. At each evaluated checkpoint that does not end training, the cell
writes ``partial/<cell id>.pt`` under the run directory, atomically, replacing the one
before: what training needs to go on (``certify.train.training_state``: the trained
tensors, optimizer, schedule, loss scaler, RNG states and step, from which the data
position follows) and what the cell has recorded so far (checkpoint records, samples,
evaluation time). The next run of the cell starts its recipe again (drawing examples,
making the model: cheap and deterministic), and the training loop then continues from
the kept step, so its records are the ones an uninterrupted run makes.

Only the training call that kept the state resumes from it; a search's sub-trials and
FSDP-sharded cells keep nothing. The driver deletes the file once the cell's result is
written. The file holds tensors and plain data only and is loaded with
``weights_only=True``, so a planted file cannot run code.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from certify._io import atomic_write
from certify.plan import CellSpec

log = logging.getLogger(__name__)

FORMAT = "certify.cell-state/v1"
SAVE_SECONDS = 180.0
"""``auto`` keeps cell state when the cost model estimates a cell over this long: below
it, writing the state at every checkpoint costs more than a lost cell would."""


def state_path(run_dir: Path, cell_id: str) -> Path:
    return run_dir / "partial" / f"{cell_id}.pt"


def kept_states(run_dir: Path) -> frozenset[str]:
    """Ids of the cells whose state an earlier attempt kept in ``run_dir``."""
    return frozenset(p.stem for p in (run_dir / "partial").glob("*.pt"))


@dataclass(frozen=True)
class KeepState:
    """Where a cell keeps its state between checkpoints, and whether it saves any (it
    always resumes from a state it finds there)."""

    path: Path
    save: bool

    @property
    def study(self) -> Path:
        """``studies/<cell id>.journal`` beside ``partial/``: a search's Optuna study, kept
        whether or not training state is saved (a journal of a few kilobytes) and after the
        cell is written (the evidence summarises it; the file is the whole study)."""
        return self.path.parent.parent / "studies" / f"{self.path.stem}.journal"


class _Cell(Protocol):
    """The side of ``certify.run.cell.CellRun`` a keeper reads and restores."""

    spec: CellSpec

    def kept(self) -> dict[str, Any]: ...
    def resume_from(self, kept: dict[str, Any]) -> None: ...


class CellKeeper:
    """The ``certify.train.Keeper`` of one training call of one cell."""

    def __init__(self, run: _Cell, path: Path, call: int, save: bool) -> None:
        self.run, self.path, self.call, self.save_enabled = run, path, call, save

    def restore(self) -> dict[str, Any] | None:
        import torch

        if not self.path.is_file():
            return None
        saved = torch.load(self.path, map_location="cpu", weights_only=True)
        cell = json.loads(saved["cell"])
        if (saved.get("format") != FORMAT or cell["id"] != self.run.spec.id
                or cell["call"] != self.call):
            return None
        self.run.resume_from(cell)
        log.info("cell %s resumes from its state at step %d", cell["id"], cell["step"])
        training: dict[str, Any] = saved["training"]
        return training

    def save(self, training: dict[str, Any]) -> None:
        if not self.save_enabled:
            return
        import torch

        cell = {"id": self.run.spec.id, "call": self.call, "step": training["state"]["step"],
                **self.run.kept()}
        kept = {"format": FORMAT, "cell": json.dumps(cell), "training": training}
        atomic_write(self.path, lambda f: torch.save(kept, f))
