"""Executors: run pending cells and hand each result to the driver, which writes it.

``local`` runs cells in this process, grouped by model so each model is loaded
once; with ``--fsdp N`` (certify.run.gang) each full fine-tuning cell is sharded
over N processes. ``ray`` (certify.run.ray_executor) fans cells out to Ray workers.
Whichever runs them, only the driver writes the run directory, so resume is the same.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from certify import _fault, stopping
from certify.errors import Interrupted, UsageError
from certify.evidence import CellRecord
from certify.plan import CellSpec
from certify.run.cell_state import discard, state_path
from certify.run.progress import CheckpointNote, Progress
from certify.run.rundir import RunDir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Executor:
    """Where cells run: ``local`` (with ``fsdp`` processes per full fine-tuning cell) or
    ``ray`` (at ``ray_address``, or a new local instance)."""

    kind: str = "local"
    fsdp: int = 1
    ray_address: str | None = None


def pending(cells: list[CellSpec], run_dir: RunDir) -> list[CellSpec]:
    done = run_dir.finished()
    todo = [c for c in cells if c.id not in done]
    # Baselines first (attack trajectories start from them), then grouped by model.
    return sorted(todo, key=lambda c: (c.attack_id != "baseline", c.role != "candidate"))


def finished_baselines(cells: list[CellSpec], run_dir: RunDir) -> list[CellRecord]:
    """The baseline cells of ``cells`` that ``run_dir`` already holds an ok result for."""
    done = run_dir.finished()
    return run_dir.read_cells([c.id for c in cells if c.attack_id == "baseline" and c.id in done])


def execute(cells: list[CellSpec], run_dir: RunDir, setup: Any, executor: Executor,
            progress: Progress) -> None:
    """Run the cells of ``cells`` that ``run_dir`` has no ok result for; the driver writes
    each result as it arrives."""
    todo = pending(cells, run_dir)
    progress.start(len(cells), len(cells) - len(todo))
    try:
        if not todo:
            return
        if executor.kind == "local" and executor.fsdp > 1:
            from certify.run.gang import run_gang

            run_gang(todo, run_dir, setup, progress, executor.fsdp)
        elif executor.kind == "local":
            run_local(todo, run_dir, setup, progress, finished_baselines(cells, run_dir))
        elif executor.kind == "ray":
            from certify.run.ray_executor import run_ray

            run_ray(todo, run_dir, setup, progress, address=executor.ray_address)
        else:
            raise UsageError(f"unknown executor {executor.kind!r}; use local or ray")
        stopping.check()  # the last safe point: a stop asked for now skips the reports
    except KeyboardInterrupt:
        run_dir.event("interrupted", signal=stopping.requested() or "SIGINT",
                      immediate=stopping.immediate() or not stopping.requested(),
                      cells_done=len(run_dir.finished()))
        raise Interrupted(run_dir.path) from None
    finally:
        progress.close()


def run_local(todo: list[CellSpec], run_dir: RunDir, setup: Any, progress: Progress,
              known: list[CellRecord] | None = None) -> None:
    """Run ``todo`` here, baselines first. ``known``: baseline cells a resumed run finished
    before, which the worker compares capability bounds with (the others it runs itself);
    Ray actors and FSDP gangs know only the baselines they ran, so an early stop that needs
    one waits there (assess.early_stop)."""
    from certify.run.worker import Worker

    worker = Worker(setup)
    worker.know(known or [])
    worker.prepare(todo)
    for spec in todo:
        stopping.check()
        progress.cell_started(spec)
        run_dir.event("cell_start", cell=spec.id,
                      **({"kept_state": True} if state_path(run_dir.path, spec.id).is_file()
                         else {}))
        _fault.reached("cell_start")
        kept = state_path(run_dir.path, spec.id)
        record, samples = worker.run(spec, lambda note: checkpoint_reached(note, run_dir,
                                                                           progress), kept)
        run_dir.write_cell(record, samples)
        discard(run_dir.path, spec.id)  # the result is written: the state is not needed
        progress.cell_finished(record)



def checkpoint_reached(note: CheckpointNote, run_dir: RunDir, progress: Progress) -> None:
    """A running cell evaluated a checkpoint: log the ``checkpoint`` event, show it."""
    run_dir.event("checkpoint", **note.event())
    progress.cell_checkpoint(note)
