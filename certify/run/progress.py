"""Progress reporting: rich on a terminal, plain lines otherwise, or nothing."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, Protocol, TextIO

from certify.evidence import CellRecord
from certify.plan import CellSpec


class Progress(Protocol):
    def message(self, text: str) -> None: ...
    def start(self, total: int, done: int) -> None: ...
    def cell_started(self, spec: CellSpec) -> None: ...
    def cell_finished(self, record: CellRecord) -> None: ...
    def close(self) -> None: ...


class NullProgress:
    def message(self, text: str) -> None: ...
    def start(self, total: int, done: int) -> None: ...
    def cell_started(self, spec: CellSpec) -> None: ...
    def cell_finished(self, record: CellRecord) -> None: ...
    def close(self) -> None: ...


def _outcome(record: CellRecord) -> str:
    if record.status == "error" and record.error:
        return f"ERROR {record.error.kind}: {record.error.message}"
    stop = f", stopped early at step {record.early_stop.step}" if record.early_stop else ""
    return f"ok in {record.seconds:.1f}s{stop}"


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

    def _print(self, text: str) -> None:
        print(f"{self.clock()} {text}", file=self.stream, flush=True)

    def message(self, text: str) -> None:
        self._print(f"certify: {text}")

    def start(self, total: int, done: int) -> None:
        self.total, self.done = total, done
        self._print(f"certify: {total} cells, {done} already done")

    def cell_started(self, spec: CellSpec) -> None:
        self._print(f"[{self.done + 1}/{self.total}] {spec.role} {spec.attack_id} seed "
                    f"{spec.seed} ({spec.id}) ...")

    def cell_finished(self, record: CellRecord) -> None:
        self.done += 1
        self._print(f"[{self.done}/{self.total}] {record.id}: {_outcome(record)}")

    def close(self) -> None: ...


class RichProgress:
    """A live progress bar over cells on a terminal."""

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
                            TimeElapsedColumn(), console=self.console, transient=False)
        self.task: Any = None

    def message(self, text: str) -> None:
        self.console.print(f"[dim]certify:[/] {text}")

    def start(self, total: int, done: int) -> None:
        self.bar.start()
        self.task = self.bar.add_task("cells", total=total, completed=done)

    def cell_started(self, spec: CellSpec) -> None:
        if self.task is not None:
            self.bar.update(self.task, description=f"{spec.role[:3]} {spec.attack_id} s{spec.seed}")

    def cell_finished(self, record: CellRecord) -> None:
        if self.task is not None:
            self.bar.advance(self.task)
        if record.status == "error":
            self.console.print(f"[red]{record.id}: {_outcome(record)}[/]")

    def close(self) -> None:
        self.bar.stop()


def auto(quiet: bool = False) -> Progress:
    if quiet:
        return NullProgress()
    return RichProgress() if sys.stderr.isatty() else PlainProgress()
