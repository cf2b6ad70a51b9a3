"""Progress reporting: rich on a terminal, plain lines otherwise, or nothing."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol, TextIO

from certify.assess.trajectory import rate
from certify.evidence import CellRecord, CheckpointRecord
from certify.plan import CellSpec
from certify.registry import budget_unit


@dataclass(frozen=True)
class CheckpointNote:
    """One evaluated checkpoint of a running cell: the ``checkpoint`` event in
    events.jsonl and the progress line. A long cell would otherwise show nothing
    between its start and its end."""

    cell: str
    step: int
    max_steps: int
    loss: float | None
    harmful: dict[str, dict[str, int]]
    """Harm evaluations at this checkpoint: eval id → {"k": judged harmful (unscored
    included, as the verdict counts them), "n": prompts}."""
    seconds: float
    """Since the cell started (training, evaluation and set-up)."""
    eta_seconds: float | None
    """To the cell's last checkpoint, from its measured step and evaluation times (an
    upper bound: early stopping may end it sooner); None before the first step."""
    unit: str = "steps"
    """What ``step`` counts: ``steps`` (optimizer steps), or the attack's budget axis
    (``samples`` for refusal_ablation, whose checkpoints are sample counts)."""

    def event(self) -> dict[str, Any]:
        return asdict(self)


def checkpoint_note(spec: CellSpec, records: list[CheckpointRecord], train_seconds: float,
                    eval_seconds: float, seconds: float) -> CheckpointNote:
    """The note for the last of ``records``, with an ETA from the cell's measured training
    time per step and evaluation time per checkpoint so far."""
    record, last = records[-1], spec.max_steps
    harmful = {}
    for eval_id, rec in record.evals.items():
        if rec.measures == "harm":
            r = rate(rec)
            harmful[eval_id] = {"k": r.k, "n": r.n}
    eta = None
    if record.step > 0 or last == 0:
        left = [c for c in spec.checkpoints if record.step < c <= last]
        eta = ((last - record.step) * train_seconds / max(1, record.step)
               + len(left) * eval_seconds / len(records))
    return CheckpointNote(cell=spec.id, step=record.step, max_steps=last, loss=record.loss,
                          harmful=harmful, seconds=round(seconds, 3),
                          eta_seconds=None if eta is None else round(eta, 3),
                          unit=budget_unit(spec.technique))


def _duration(seconds: float) -> str:
    minutes, s = divmod(round(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}h{m:02d}m" if hours else f"{m}m{s:02d}s" if m else f"{s}s"


def describe(note: CheckpointNote) -> str:
    """``step 3/6 · loss 1.234 · harm 5/12 · 12s, ETA ≤ 20s``."""
    parts = [f"step {note.step}/{note.max_steps}" if note.unit == "steps"
             else f"{note.unit} {note.step}/{note.max_steps}"]
    if note.loss is not None:
        parts.append(f"loss {note.loss:.3f}")
    parts += [f"{e} {h['k']}/{h['n']}" for e, h in note.harmful.items()]
    eta = ("" if note.eta_seconds is None or note.step >= note.max_steps
           else f", ETA ≤ {_duration(note.eta_seconds)}")
    return " · ".join(parts) + f" · {_duration(note.seconds)}{eta}"


class Progress(Protocol):
    def message(self, text: str) -> None: ...
    def expect(self, seconds: dict[str, float]) -> None: ...
    def start(self, total: int, done: int) -> None: ...
    def cell_started(self, spec: CellSpec) -> None: ...
    def cell_checkpoint(self, note: CheckpointNote) -> None: ...
    def cell_finished(self, record: CellRecord) -> None: ...
    def close(self) -> None: ...


class NullProgress:
    def message(self, text: str) -> None: ...
    def expect(self, seconds: dict[str, float]) -> None: ...
    def start(self, total: int, done: int) -> None: ...
    def cell_started(self, spec: CellSpec) -> None: ...
    def cell_checkpoint(self, note: CheckpointNote) -> None: ...
    def cell_finished(self, record: CellRecord) -> None: ...
    def close(self) -> None: ...


def _outcome(record: CellRecord) -> str:
    if record.status == "error" and record.error:
        return f"ERROR {record.error.kind}: {record.error.message}"
    stop = f", stopped early at step {record.early_stop.step}" if record.early_stop else ""
    return f"ok in {record.seconds:.1f}s{stop}"


class RunEta:
    """The audit's remaining time. With the cost model's seconds per pending cell
    (``expect``) it is their sum over the cells left, scaled by how the finished cells'
    measured seconds compare with their estimates; without them, the mean measured seconds
    of a finished cell times the cells left. Either reads "~" and sharpens as cells finish;
    without an estimate nothing is claimed before the first cell."""

    def __init__(self) -> None:
        self.total = self.done = 0
        self.seconds: list[float] = []
        self.expected: dict[str, float] = {}
        self.finished_ids: dict[str, float] = {}

    def start(self, total: int, done: int) -> None:
        self.total, self.done = total, done

    def expect(self, seconds: dict[str, float]) -> None:
        self.expected = {k: v for k, v in seconds.items() if v >= 0}

    def finished(self, record: CellRecord) -> None:
        self.done += 1
        if record.seconds > 0:
            self.seconds.append(record.seconds)
            self.finished_ids[record.id] = record.seconds

    def remaining(self) -> float | None:
        left = self.total - self.done
        if left <= 0:
            return None
        if self.expected:
            measured = [(s, self.expected[i]) for i, s in self.finished_ids.items()
                        if i in self.expected]
            scale = (sum(s for s, _ in measured) / max(1e-9, sum(e for _, e in measured))
                     if measured else 1.0)
            rest = [e for i, e in self.expected.items() if i not in self.finished_ids]
            return scale * sum(rest) if rest else None
        if not self.seconds:
            return None
        return sum(self.seconds) / len(self.seconds) * left

    def text(self) -> str:
        seconds = self.remaining()
        if seconds is None:
            return ""
        left = self.total - self.done
        basis = " from the cost model" if self.expected and not self.finished_ids else ""
        return (f"run ETA ~{_duration(seconds)} ({left} cell{'s' if left > 1 else ''} "
                f"left{basis})")


def utc_stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class PlainProgress:
    """One line per event, for logs and CI, each stamped with the UTC time: a CI log
    then shows how long each cell took and when the run stalled, without a terminal."""

    def __init__(self, stream: TextIO | None = None,
                 clock: Callable[[], str] = utc_stamp) -> None:
        self.stream = stream or sys.stderr
        self.clock = clock
        self.total = self.done = 0
        self.eta = RunEta()

    def _print(self, text: str) -> None:
        print(f"{self.clock()} {text}", file=self.stream, flush=True)

    def message(self, text: str) -> None:
        self._print(f"certify: {text}")

    def expect(self, seconds: dict[str, float]) -> None:
        self.eta.expect(seconds)

    def start(self, total: int, done: int) -> None:
        self.total, self.done = total, done
        self.eta.start(total, done)
        eta = self.eta.text()
        self._print(f"certify: {total} cells, {done} already done" + (f" · {eta}" if eta else ""))

    def cell_started(self, spec: CellSpec) -> None:
        self._print(f"[{self.done + 1}/{self.total}] {spec.role} {spec.attack_id} seed "
                    f"{spec.seed} ({spec.id}) ...")

    def cell_checkpoint(self, note: CheckpointNote) -> None:
        self._print(f"[{self.done + 1}/{self.total}] {note.cell}: {describe(note)}")

    def cell_finished(self, record: CellRecord) -> None:
        self.done += 1
        self.eta.finished(record)
        eta = self.eta.text()
        self._print(f"[{self.done}/{self.total}] {record.id}: {_outcome(record)}"
                    + (f" · {eta}" if eta else ""))

    def close(self) -> None: ...


class RichProgress:
    """Live bars on a terminal: one over the cells (with the run's ETA), and one over the
    running cell's optimizer steps (moved at each evaluated checkpoint)."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.console = Console(stderr=True)
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), TextColumn("{task.fields[eta]}"),
                            console=self.console, transient=False)
        self.task: Any = None
        self.steps: Any = None
        self.cell = ""
        self.eta = RunEta()

    def message(self, text: str) -> None:
        self.console.print(f"[dim]certify:[/] {text}")

    def expect(self, seconds: dict[str, float]) -> None:
        self.eta.expect(seconds)

    def start(self, total: int, done: int) -> None:
        self.eta.start(total, done)
        self.bar.start()
        self.task = self.bar.add_task("cells", total=total, completed=done, eta=self.eta.text())

    def cell_started(self, spec: CellSpec) -> None:
        self.cell = f"{spec.role[:3]} {spec.attack_id} s{spec.seed}"
        unit = f"  {budget_unit(spec.technique)}"
        if self.task is None:
            return
        self.bar.update(self.task, description=self.cell)
        total = max(1, spec.max_steps)
        if self.steps is None:
            self.steps = self.bar.add_task(unit, total=total, eta="")
        self.bar.reset(self.steps, total=total, completed=0, visible=spec.max_steps > 0,
                       description=unit, eta="")

    def cell_checkpoint(self, note: CheckpointNote) -> None:
        if self.task is None:
            return
        self.bar.update(self.task, description=f"{self.cell} · {describe(note)}")
        if self.steps is not None:
            eta = ("" if note.eta_seconds is None or note.step >= note.max_steps
                   else f"cell ETA ≤ {_duration(note.eta_seconds)}")
            self.bar.update(self.steps, completed=note.step, eta=eta)

    def cell_finished(self, record: CellRecord) -> None:
        self.eta.finished(record)
        if self.task is not None:
            self.bar.advance(self.task)
            self.bar.update(self.task, eta=self.eta.text())
        if self.steps is not None:
            self.bar.update(self.steps, visible=False)
        if record.status == "error":
            self.console.print(f"[red]{record.id}: {_outcome(record)}[/]")

    def close(self) -> None:
        self.bar.stop()


def auto(quiet: bool = False) -> Progress:
    if quiet:
        return NullProgress()
    return RichProgress() if sys.stderr.isatty() else PlainProgress()
