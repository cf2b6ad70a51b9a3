"""Plain progress lines carry a UTC timestamp (issue 15, "progress that tells you when
it ends": plain mode prints timestamped lines)."""

from __future__ import annotations

import io
import re

from certify.evidence import CellRecord
from certify.run.progress import PlainProgress


def test_every_plain_line_starts_with_a_utc_timestamp() -> None:
    out = io.StringIO()
    progress = PlainProgress(out)
    progress.start(2, 0)
    progress.message("loading models")
    progress.cell_finished(CellRecord(id="c0", role="candidate", attack_id="a", technique="sft",
                                      purpose="harmful", params={}, seed=0, max_steps=8,
                                      status="ok", seconds=1.5))
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    for line in lines:
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \S", line), line


def test_plain_lines_read_the_same_after_the_stamp() -> None:
    out = io.StringIO()
    progress = PlainProgress(out, clock=lambda: "T")
    progress.start(3, 1)
    progress.message("hi")
    assert out.getvalue() == "T certify: 3 cells, 1 already done\nT certify: hi\n"


def _cell(cell_id: str, seconds: float) -> CellRecord:
    return CellRecord(id=cell_id, role="candidate", attack_id="a", technique="sft",
                      purpose="harmful", params={}, seed=0, max_steps=8, status="ok",
                      seconds=seconds)


def test_plain_lines_give_the_run_eta_from_the_cells_measured() -> None:
    out = io.StringIO()
    progress = PlainProgress(out, clock=lambda: "T")
    progress.start(5, 1)
    progress.cell_finished(_cell("c1", 60.0))
    progress.cell_finished(_cell("c2", 120.0))  # mean 90 s, 2 cells left
    progress.cell_finished(_cell("c3", 90.0))
    lines = out.getvalue().splitlines()
    assert lines[1].endswith("· run ETA ~3m00s (3 cells left)")
    assert lines[2].endswith("· run ETA ~3m00s (2 cells left)")
    assert lines[3].endswith("· run ETA ~1m30s (1 cell left)")
    progress.cell_finished(_cell("c4", 10.0))
    assert "ETA" not in out.getvalue().splitlines()[-1]  # nothing left


def test_the_terminal_bar_tracks_the_running_cells_steps() -> None:
    from types import SimpleNamespace

    from certify.run.progress import CheckpointNote, RichProgress

    progress = RichProgress()
    progress.console.file = io.StringIO()  # rendered off-screen
    progress.start(3, 0)
    try:
        spec = SimpleNamespace(role="candidate", attack_id="harmful-full", seed=1, max_steps=40,
                               technique="sft")
        progress.cell_started(spec)  # type: ignore[arg-type]
        steps = progress.bar.tasks[progress.steps]
        assert steps.total == 40 and steps.completed == 0 and steps.visible
        assert steps.description.strip() == "steps"
        progress.cell_checkpoint(CheckpointNote("c", 12, 40, 1.0, {}, 30.0, 70.0))
        assert steps.completed == 12 and steps.fields["eta"] == "cell ETA ≤ 1m10s"
        progress.cell_finished(_cell("c", 100.0))
        assert not steps.visible
        cells = progress.bar.tasks[progress.task]
        assert cells.completed == 1 and cells.fields["eta"] == "run ETA ~3m20s (2 cells left)"
        progress.cell_started(SimpleNamespace(role="reference", attack_id="b", seed=0,  # type: ignore[arg-type]
                                              max_steps=8, technique="refusal_ablation"))
        assert steps.visible and steps.total == 8 and steps.completed == 0
        assert steps.description.strip() == "samples"  # a weight edit's budget axis
    finally:
        progress.close()


def test_the_run_eta_starts_from_the_cost_model_and_follows_measured_cells() -> None:
    out = io.StringIO()
    progress = PlainProgress(out, clock=lambda: "T")
    progress.expect({"c1": 60.0, "c2": 60.0, "c3": 120.0})  # the cost model's seconds
    progress.start(3, 0)
    assert out.getvalue().splitlines()[0].endswith(
        "· run ETA ~4m00s (3 cells left from the cost model)")
    progress.cell_finished(_cell("c1", 120.0))  # twice as slow as estimated
    assert out.getvalue().splitlines()[-1].endswith("· run ETA ~6m00s (2 cells left)")
    progress.cell_finished(_cell("c2", 30.0))   # measured 150 s of 120 s estimated: 1.25×
    assert out.getvalue().splitlines()[-1].endswith("· run ETA ~2m30s (1 cell left)")


def test_cost_model_cells_are_matched_to_the_plan_by_position() -> None:
    """The dry run plans under placeholder digests, so its cell ids differ from the run's:
    its seconds reach the plan's cells by position, and only when the cells line up."""
    from types import SimpleNamespace

    from certify.conductor.preflight import cell_seconds

    plan = [SimpleNamespace(id=f"real-{i}", role="candidate", attack_id=a, seed=0)
            for i, a in enumerate(["baseline", "harmful-full"])]
    rows = [{"id": "dry-0", "role": "candidate", "attack_id": "baseline", "seed": 0,
             "seconds": 8.0},
            {"id": "dry-1", "role": "candidate", "attack_id": "harmful-full", "seed": 0,
             "seconds": 111.5}]
    preview = SimpleNamespace(as_json=lambda: {"cells": rows})
    assert cell_seconds(preview, plan) == {"real-0": 8.0, "real-1": 111.5}
    rows[1]["seed"] = 1
    assert cell_seconds(preview, plan) == {}
    assert cell_seconds(None, plan) == {}
