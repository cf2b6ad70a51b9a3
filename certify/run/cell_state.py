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

An FSDP-sharded cell (``--fsdp N``, certify.run.gang) keeps the same, spread over its
processes: each rank but 0 writes its own shards of the weights and optimizer state,
with its schedule and RNG states, to ``partial/<cell id>.shards/call<C>-step<S>/rank<R>.pt``;
once every rank has written its file, the leader writes ``partial/<cell id>.pt`` (rank
0's shards, the records, and the world size that goes with them) and only then
deletes the folder of the state before. A kill mid-save therefore leaves the previous
complete state, never ranks at different steps. A state kept with another world size,
or one whose folder lacks a rank's readable file, is ignored with a warning and the
cell starts again from step 0. Each rank's files are its shards as plain tensors
(``DTensor.to_local``), not ``torch.distributed.checkpoint``: that format reads its
metadata with ``pickle`` and would let a planted file run code, and resharding to
another world size, its one advantage here, is not needed for a resume.

Only the training call that kept the state resumes from it; a search's sub-trials keep
nothing. The driver deletes the files once the cell's result is written (:func:`discard`),
but for a cell whose FSDP gang lost a process (``worker_died``): the resume retries it
from them.
Every file holds tensors and plain data only and is loaded with ``weights_only=True``, so
a planted file cannot run code.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from certify._io import atomic_write
from certify.errors import CellError
from certify.plan import CellSpec

log = logging.getLogger(__name__)

FORMAT = "certify.cell-state/v1"
SHARD_FORMAT = "certify.cell-state-shard/v1"
SAVE_SECONDS = 180.0
"""``auto`` keeps cell state when the cost model estimates a cell over this long: below
it, writing the state at every checkpoint costs more than a lost cell would."""


def state_path(run_dir: Path, cell_id: str) -> Path:
    return run_dir / "partial" / f"{cell_id}.pt"


def shards_dir(path: Path) -> Path:
    """Beside the state at ``path``, the folder of the other FSDP ranks' shards."""
    return path.parent / f"{path.stem}.shards"


def discard(run_dir: Path, cell_id: str) -> None:
    """Delete what the cell kept (its result is written: the state is not needed)."""
    path = state_path(run_dir, cell_id)
    path.unlink(missing_ok=True)
    shutil.rmtree(shards_dir(path), ignore_errors=True)


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


class _Gang(Protocol):
    """The side of the FSDP leader (``certify.run.gang.Leader``) a keeper uses."""

    world: int

    def keep(self, folder: Path, meta: dict[str, Any]) -> int: ...
    def restore(self, folder: Path, meta: dict[str, Any], training: dict[str, Any]) -> bool: ...


class CellKeeper:
    """The ``certify.train.Keeper`` of one training call of one cell; with ``gang``, of
    rank 0 of an FSDP gang (the other ranks keep their shards when the leader says)."""

    def __init__(self, run: _Cell, path: Path, call: int, save: bool,
                 gang: _Gang | None = None) -> None:
        self.run, self.path, self.call, self.save_enabled = run, path, call, save
        self.gang = gang
        self.world = gang.world if gang is not None else 1

    def restore(self) -> dict[str, Any] | None:
        import torch

        if not self.path.is_file():
            return None
        saved = torch.load(self.path, map_location="cpu", weights_only=True)
        cell = json.loads(saved["cell"])
        if (saved.get("format") != FORMAT or cell["id"] != self.run.spec.id
                or cell["call"] != self.call or not isinstance(cell["step"], int)):
            return None
        world = cell.get("world", 1)
        if world != self.world:
            log.warning("cell %s kept its state at step %d trained by %s; this run trains it "
                        "by %s: the state is ignored and the cell starts again from step 0",
                        cell["id"], cell["step"], _processes(world), _processes(self.world))
            return None
        training: dict[str, Any] = saved["training"]
        if self.gang is not None and not self.gang.restore(
                self._folder(cell["step"]), _meta(cell), training):
            log.warning("cell %s: the state it kept at step %d lacks a readable shard of "
                        "some FSDP process (see above): the cell starts again from step 0",
                        cell["id"], cell["step"])
            return None
        self.run.resume_from(cell)
        log.info("cell %s resumes from its state at step %d", cell["id"], cell["step"])
        return training

    def save(self, training: dict[str, Any]) -> None:
        if not self.save_enabled:
            return
        import torch

        cell = {"id": self.run.spec.id, "call": self.call, "step": training["state"]["step"],
                "world": self.world, **self.run.kept()}
        folder = self._folder(cell["step"])
        if self.gang is not None:
            shutil.rmtree(folder, ignore_errors=True)  # of a state this cell did not take up
            failed = self.gang.keep(folder, _meta(cell))
            if failed:
                raise CellError("cell_state", f"{failed} FSDP process(es) could not write "
                                "their shard of the cell state (see the log above)",
                                hint="free disk space under the run directory, or resume "
                                     "with --cell-state off")
        kept = {"format": FORMAT, "cell": json.dumps(cell), "training": training}
        atomic_write(self.path, lambda f: torch.save(kept, f))
        if self.gang is not None and folder.parent.is_dir():  # the new state is complete:
            for old in folder.parent.iterdir():                # the one before can go
                if old != folder:
                    shutil.rmtree(old, ignore_errors=True)

    def _folder(self, step: int) -> Path:
        """The other ranks' files of the state at ``step`` (named by this keeper, never
        read off the manifest: a planted one cannot point the ranks elsewhere)."""
        return shards_dir(self.path) / f"call{self.call}-step{step}"


def _meta(cell: dict[str, Any]) -> dict[str, Any]:
    """What identifies one kept state: every rank's file must say the same."""
    return {k: cell[k] for k in ("id", "call", "step", "world")}


def _processes(world: int) -> str:
    return "one process" if world == 1 else f"an FSDP gang of {world} processes"


def save_shard(folder: Path, rank: int, meta: dict[str, Any],
               training: dict[str, Any]) -> bool:
    """Rank ``rank``'s part of a sharded state (its ``training_state``); False (logged)
    when it could not be written."""
    import torch

    kept = {"format": SHARD_FORMAT, "cell": json.dumps({**meta, "rank": rank}),
            "training": training}
    try:
        atomic_write(folder / f"rank{rank}.pt", lambda f: torch.save(kept, f))
    except OSError as e:
        log.error("FSDP rank %d could not keep its shard of cell %s's state: %s", rank,
                  meta["id"], e)
        return False
    return True


def load_shard(folder: Path, rank: int, meta: dict[str, Any]) -> dict[str, Any] | None:
    """The training state :func:`save_shard` kept for ``rank`` with ``meta``, or None
    (logged) when it is missing, unreadable or of another state."""
    import torch

    path = folder / f"rank{rank}.pt"
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        cell = json.loads(saved["cell"])
    except Exception as e:  # missing, truncated, planted: never a crash, never a mix
        log.warning("FSDP rank %d finds no usable shard of cell %s's state at %s: %s", rank,
                    meta["id"], path, e)
        return None
    if saved.get("format") != SHARD_FORMAT or cell != {**meta, "rank": rank}:
        log.warning("FSDP rank %d: %s is the shard of another state (%s)", rank, path, cell)
        return None
    training: dict[str, Any] = saved["training"]
    return training
