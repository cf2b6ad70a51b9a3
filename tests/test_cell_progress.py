"""Progress inside a cell: a `checkpoint` event per evaluated checkpoint, and a line.

The events of the uninterrupted fault-tiny run (tests/test_fault_injection.py's
reference, made once per session) are checked against the cells it recorded.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from certify.assess.trajectory import rate
from certify.evidence import Evidence
from certify.run.progress import CheckpointNote, PlainProgress
from tests.conftest import events
from tests.test_fault_injection import reference_run


@pytest.fixture(scope="module")
def reference(tiny_chat: Path, tmp_path_factory: pytest.TempPathFactory,
              ) -> tuple[Path, list[str], int]:
    return reference_run(tmp_path_factory)


def test_every_evaluated_checkpoint_is_an_event_with_its_numbers(reference: Any) -> None:
    run = reference[0]
    ev = Evidence.read(run / "evidence.json")
    log = events(run)
    for cell in ev.cells:
        notes = [e for e in log if e["event"] == "checkpoint" and e["cell"] == cell.id]
        assert [n["step"] for n in notes] == [cp.step for cp in cell.checkpoints], cell.id
        start = next(i for i, e in enumerate(log) if e.get("cell") == cell.id)
        done = next(i for i, e in enumerate(log) if e["event"] == "cell_done"
                    and e["cell"] == cell.id)
        assert all(start < log.index(n) < done for n in notes)  # while the cell ran
        for note, cp in zip(notes, cell.checkpoints, strict=True):
            assert note["loss"] == cp.loss and note["max_steps"] == cell.max_steps
            harm = {e: {"k": rate(r).k, "n": rate(r).n} for e, r in cp.evals.items()
                    if r.measures == "harm"}
            assert note["harmful"] == harm and harm["harm"]["n"] == 12
            assert note["seconds"] >= 0
            last = note["step"] == cell.max_steps
            assert note["eta_seconds"] == 0 if last else note["eta_seconds"] > 0
        assert [n["seconds"] for n in notes] == sorted(n["seconds"] for n in notes)
    sft = next(c for c in ev.cells if c.attack_id == "sft")
    assert [cp.step for cp in sft.checkpoints] == [3, 6]  # an intermediate checkpoint too


def test_the_progress_line_shows_step_loss_harm_and_eta() -> None:
    out = io.StringIO()
    progress = PlainProgress(out)
    progress.start(4, 1)
    progress.cell_checkpoint(CheckpointNote("can-sft-1", 3, 6, 1.23456,
                                            {"harm": {"k": 5, "n": 12}}, 75.0, 130.0))
    stamp, line = out.getvalue().splitlines()[-1].split(" ", 1)  # plain lines carry UTC time
    assert stamp.endswith("Z") and "T" in stamp
    assert line == "[2/4] can-sft-1: step 3/6 · loss 1.235 · harm 5/12 · 1m15s, ETA ≤ 2m10s"
