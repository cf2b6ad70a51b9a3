"""The FSDP executor (``--fsdp N``): every full fine-tuning cell is trained by N processes.

A *gang* is N processes on this machine (one per GPU with ``--device cuda``; gloo
processes on the CPU), started by the driver. Rank 0, the *leader*, is an ordinary
worker: it loads the models, runs every cell's recipe and every evaluation, and
sends each result to the driver, which alone writes the run directory (so resume
is the same as with the other executors). When a recipe asks for trainable weights
the leader has every rank build an FSDP-sharded copy (certify.models.fsdp); each
optimizer step it sends the step's batch, every rank trains its rows, and at a
checkpoint the shards are gathered back into the leader's model for evaluation.
Cells that do not train all weights (LoRA, baselines) run on the leader alone while
the other ranks wait.

The leader's messages to the other ranks, in order, are broadcasts:
``shard`` (the architecture to build), ``fit`` (optimizer and schedule as data),
``step`` (a global batch) and ``gather`` many times, ``end``, ``release``, and
``stop`` when there are no cells left. With ``--cell-state`` a sharded cell also sends
``keep`` after an evaluated checkpoint (every rank writes its shards of the training
state; certify.run.cell_state) and, when it starts from a kept state, ``restore`` (every
rank reads its shards, and all take them only if every rank could).

A rank that dies (killed for memory, crashed) makes the driver stop the gang: the
cell it was in becomes an error record (``worker_died``) and a fresh gang takes the
remaining cells, as a replacement Ray actor would. Ctrl-C stops the gang; finished
cells are on disk and the run resumes.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import queue as queue_mod
import signal
import socket
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from certify import _fault, stopping
from certify.errors import CellError, CertifyError, DataError, InputError, ModelError, RunError
from certify.evidence import CellRecord
from certify.plan import CellSpec
from certify.run.cell_state import discard, load_shard, save_shard, state_path
from certify.run.progress import Progress
from certify.run.rundir import RunDir

log = logging.getLogger(__name__)

_POLL_SECONDS = 1.0
_EXIT_SECONDS = 5.0
_PASSED_ON = {c.__name__: c for c in (InputError, ModelError, DataError)}


class Leader:
    """Rank 0's side of the gang, used by the cell it is running (``CellRun.gang``)."""

    def __init__(self, group: Any) -> None:
        self.group = group
        self.model: Any = None
        self.broken = False
        """The other ranks are out of step (a collective was cut short): start a new gang."""
        self._busy = False  # in a collective or a training step
        self._ungathered = False
        self._skip = 0  # batches a restored state has trained on already

    @property
    def world(self) -> int:
        return self.group.world

    def _send(self, *message: Any) -> None:
        self._busy = True
        self.group.broadcast(message)

    def shard(self, handle: Any) -> Any:
        """A trainable FSDP copy of the handle's current weights, on every rank."""
        from certify.models.fsdp import sharded_copy, skeleton_of

        self.release()
        skeleton = skeleton_of(handle.model, handle.options.gradient_checkpointing)
        self._send("shard", skeleton)
        self.model = sharded_copy(self.group, skeleton, handle.model)
        self._busy = False
        return self.model

    @contextlib.contextmanager
    def fitting(self, optim: Any, autocast_dtype: Any, batch_size: int,
                target: Any) -> Iterator[Any]:
        """Train the sharded model: yields a function that relays each batch to the ranks."""
        from certify.run.cell import is_out_of_memory

        if batch_size < self.world:
            raise CellError("batch_too_small", f"batch_size {batch_size} cannot be split over "
                            f"{self.world} FSDP processes (each needs at least one row)",
                            hint=f"use batch_size >= {self.world} or a smaller --fsdp")
        self._send("fit", optim, autocast_dtype)
        self._busy, self._skip = False, 0
        try:
            yield self._relay
            if self._ungathered:
                self.gather_into(target)  # the recipe's model ends with the final weights
        except CellError as e:
            if e.kind == "non_finite_loss":  # the global loss: every rank stopped here
                self._busy = False
            raise
        except Exception as e:
            if not self._busy or is_out_of_memory(e):
                raise
            raise CellError("worker_died", "an FSDP step or collective failed on rank 0 "
                            f"(another process of the gang probably died): {e}",
                            hint="often out of memory; resume to retry the cell") from e
        finally:
            if not self._busy:
                self._send("end")
                self._busy = False

    def _relay(self, batches: Iterator[Any]) -> Iterator[Any]:
        for batch in batches:
            if self._skip:  # drawn again by the restore: no rank trains on it again
                self._skip -= 1
                yield batch
                continue
            self._send("step", batch)
            self._ungathered = True
            yield batch  # train() steps on it, then comes back for the next
            self._busy = False

    def gather_into(self, target: Any) -> None:
        """Put the sharded model's current weights into ``target`` (rank 0's model)."""
        from certify.models.fsdp import gather_into

        self._busy = False  # train() calls back between steps
        self._send("gather")
        gather_into(self.model, target)
        self._busy = self._ungathered = False

    def keep(self, folder: Path, meta: dict[str, Any]) -> int:
        """Every other rank writes its shard of the training state into ``folder``
        (certify.run.cell_state); how many could not."""
        import torch

        self._send("keep", str(folder), meta)
        written = int(self.group.all_sum(torch.zeros(())))
        self._busy = False
        return self.world - 1 - written

    def restore(self, folder: Path, meta: dict[str, Any], training: dict[str, Any]) -> bool:
        """Every rank takes its kept shards (rank 0's are ``training``, which the training
        loop puts back) if every rank finds its own; whether they did."""
        import torch

        from certify.train import fits

        mine = fits(training, list(self.model.parameters()))
        self._send("restore", str(folder), meta)
        agreed = int(self.group.all_sum(torch.tensor(float(mine)))) == self.world
        self._busy = False
        self._skip = meta["step"] if agreed else 0
        return agreed

    def release(self) -> None:
        """Free the sharded copy on every rank (the end of a cell)."""
        self.broken = self.broken or self._busy
        if self.model is not None and not self.broken:
            self._send("release")
            self._busy = False
        self.model = None
        gc.collect()

    def stop(self) -> None:
        if not self.broken:
            self._send("stop")


def follow(group: Any) -> None:
    """Ranks 1..N-1: do what the leader's broadcasts say until ``stop``."""
    import torch

    from certify.models.fsdp import gather_into, sharded_copy
    from certify.train import Stepper, TrainState, fits, restore_training, training_state

    model: Any = None
    stepper: Stepper | None = None
    step = 0
    while True:
        kind, *args = group.broadcast()
        if kind == "shard":
            model = stepper = None
            gc.collect()
            model = sharded_copy(group, args[0], None)
        elif kind == "fit":
            optim, autocast_dtype = args
            optimizer, schedule = optim.build(model.parameters())
            stepper = Stepper(model, optimizer, schedule, device=group.device,
                              grad_clip=optim.grad_clip, autocast_dtype=autocast_dtype,
                              group=group)
            model.train()
            step = 0
        elif kind == "step":
            step += 1
            assert stepper is not None
            with contextlib.suppress(CellError):  # a non-finite global loss: the leader
                stepper(step, *args[0])           # records the cell's error
            _fault.reached("train_step")
        elif kind == "gather":
            gather_into(model, None)
        elif kind == "keep":
            assert stepper is not None
            folder, meta = args
            kept = training_state(TrainState(step=meta["step"]), stepper)
            group.all_sum(torch.tensor(float(save_shard(Path(folder), group.rank, meta, kept))))
        elif kind == "restore":
            assert stepper is not None
            folder, meta = args
            saved = load_shard(Path(folder), group.rank, meta)
            mine = saved is not None and fits(saved, list(model.parameters()))
            if int(group.all_sum(torch.tensor(float(mine)))) == group.world:
                assert saved is not None
                restore_training(saved, TrainState(), stepper, None)
                step = meta["step"]
        elif kind == "end":
            stepper = None
        elif kind == "release":
            model = stepper = None
            gc.collect()
        elif kind == "stop":
            return


def _lead(group: Any, setup: Any, specs: list[CellSpec], results: Any,
          state_dir: str | None = None) -> None:
    from certify.run.worker import Worker

    leader = Leader(group)
    worker = Worker(setup, gang=leader)
    worker.prepare(specs)
    for spec in specs:
        results.put(("started", spec.id))
        _fault.reached("cell_start")
        # The leader keeps the state of the training it runs alone (LoRA, other adapters)
        # and, with every rank keeping its shards, of sharded training: certify.run.cell_state.
        kept = state_path(Path(state_dir), spec.id) if state_dir else None
        record, samples = worker.run(spec, lambda note: results.put(("checkpoint", note)),
                                     kept)
        results.put(("done", record.model_dump_json(), samples))
        if leader.broken:
            results.put(("broken", spec.id))
            return
    leader.stop()
    results.put(("finished",))


def die_with_driver() -> None:
    """Have the kernel end this process when the process that started it dies (Linux).

    The ranks are daemon processes, which the driver ends on any exit it lives through
    (run_gang's finally, multiprocessing's exit handler); a driver killed by SIGKILL (the
    OOM killer, a CI runner's last resort) runs neither, and its ranks would sit in a
    collective until COLLECTIVE_TIMEOUT, holding their GPUs. The gang is started from the
    driver's main thread, whose end is the process's end. Elsewhere: nothing."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import multiprocessing

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:  # it died before the prctl
        os._exit(1)


def _rank_main(rank: int, world: int, port: int, setup: Any, specs_json: list[str],
               results: Any, state_dir: str | None = None) -> None:
    """Entry point of one gang process."""
    from certify.models.fsdp import join, leave

    die_with_driver()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver handles Ctrl-C
    logging.basicConfig(level=logging.WARNING)
    try:
        import torch

        torch.set_num_threads(setup.threads or max(1, (os.cpu_count() or 1) // world))
        group = join(rank, world, port, setup.device)
        if rank == 0:
            _lead(group, setup, [CellSpec.model_validate_json(s) for s in specs_json], results,
                  state_dir)
        else:
            follow(group)
        leave()
    except BaseException as e:
        hint = e.hint if isinstance(e, CertifyError) else None
        message = e.message if isinstance(e, CertifyError) else \
            traceback.format_exception_only(type(e), e)[-1].strip()
        log.error("FSDP rank %d failed: %s\n%s", rank, message, traceback.format_exc())
        results.put(("failed", rank, type(e).__name__, message, hint))
        results.close()
        results.join_thread()  # the message must reach the driver before this process ends
        os._exit(1)  # skip collectives and atexit handlers that would wait for dead peers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Gang:
    """The driver's handle on the N processes of one gang."""

    def __init__(self, world: int, setup: Any, todo: list[CellSpec],
                 state_dir: Path | None = None) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self.results = ctx.Queue()
        port = _free_port()
        specs = [s.model_dump_json() for s in todo]
        self.processes = [ctx.Process(target=_rank_main, name=f"certify-fsdp-{rank}",
                                      args=(rank, world, port, setup, specs, self.results,
                                            str(state_dir) if state_dir else None),
                                      daemon=True) for rank in range(world)]
        for p in self.processes:
            p.start()

    def next_message(self) -> tuple[Any, ...]:
        """The next message from a rank, or ("died", rank, exitcode) when one is gone."""
        while True:
            try:
                return tuple(self.results.get(timeout=_POLL_SECONDS))
            except queue_mod.Empty:
                stopping.check()  # SIGTERM/SIGINT: run_gang's finally ends the ranks
                for rank, p in enumerate(self.processes):
                    if p.exitcode is not None and p.exitcode != 0:
                        return ("died", rank, p.exitcode)

    def stop(self, finished: bool) -> None:
        """Let the ranks of a finished gang exit; end the others (they may wait forever)."""
        deadline = time.monotonic() + (_EXIT_SECONDS if finished else 0.0)
        for p in self.processes:
            p.join(timeout=max(0.0, deadline - time.monotonic()))
        for p in self.processes:
            if p.is_alive():
                p.terminate()
                p.join(timeout=_EXIT_SECONDS)
            if p.is_alive():
                p.kill()
                p.join()
        self.results.close()


def run_gang(todo: list[CellSpec], run_dir: RunDir, setup: Any, progress: Progress,
             world: int) -> None:
    """Run ``todo`` with FSDP gangs of ``world`` processes; write each result as it arrives."""
    from certify.run.cell import died_record

    written: set[str] = set()
    while remaining := [s for s in todo if s.id not in written]:
        gang = Gang(world, setup, remaining, run_dir.path)
        run_dir.event("fsdp_start", processes=world, device=setup.device,
                      pids=[p.pid for p in gang.processes])
        current, why = None, "interrupted"
        try:
            current, why = _drive(gang, remaining, run_dir, progress, written)
        finally:
            gang.stop(finished=not why)
        if current is not None:
            log.error("FSDP gang lost running cell %s: %s", current.id, why)
            record = died_record(current, f"a process of the FSDP gang running this cell "
                                          f"died: {why}")
            run_dir.write_cell(record, [])
            progress.cell_finished(record)
            written.add(current.id)
    run_dir.event("fsdp_done", processes=world)


def _drive(gang: Gang, todo: list[CellSpec], run_dir: RunDir, progress: Progress,
           written: set[str]) -> tuple[CellSpec | None, str]:
    """Relay one gang's messages until it finishes or breaks: (cell it was in, why)."""
    by_id = {s.id: s for s in todo}
    current: CellSpec | None = None
    while True:
        kind, *args = gang.next_message()
        if kind in ("failed", "died"):
            stopping.check()  # a rank ended by the same SIGTERM: an interruption, not an error
        if kind == "started":
            current = by_id[args[0]]
            progress.cell_started(current)
            run_dir.event("cell_start", cell=current.id, worker="fsdp-gang",
                          **({"kept_state": True}
                             if state_path(run_dir.path, current.id).is_file() else {}))
        elif kind == "checkpoint":
            run_dir.event("checkpoint", **args[0].event())
            progress.cell_checkpoint(args[0])
        elif kind == "done":
            record = CellRecord.model_validate_json(args[0])
            run_dir.write_cell(record, args[1])
            if not (record.error and record.error.kind == "worker_died"):
                # The result is written: the state is not needed. A cell whose gang lost a
                # process (killed, preempted) is retried on resume: from its kept state.
                discard(run_dir.path, record.id)
            progress.cell_finished(record)
            written.add(record.id)
            current = None
        elif kind == "finished":
            return None, ""
        elif kind == "broken":
            return None, "broken"  # the cell's error is recorded; a fresh gang takes the rest
        elif kind == "failed":
            rank, name, message, hint = args
            if name in _PASSED_ON and rank == 0:
                # A model or dataset the leader cannot load: the audit stops (exit 2), as
                # the local executor's does; no cell is charged with it.
                raise _PASSED_ON[name](message, hint=hint)
            if current is None:
                raise RunError(f"FSDP rank {rank} failed before running a cell: {message}",
                               hint=hint or "see the log above; the run directory resumes")
            return current, f"rank {rank}: {message}"
        elif kind == "died":
            rank, code = args
            cause = f"signal {-code}" if code < 0 else f"exit code {code}"
            if current is None:
                raise RunError(f"FSDP rank {rank} ended ({cause}) before running a cell",
                               hint="see the log above; the run directory resumes")
            return current, f"rank {rank} ended ({cause}); often the machine ran out of memory"
