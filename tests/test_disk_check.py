"""The disk check before an audit: the run directory's need against the free space."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from certify.conductor import AuditOptions
from certify.cost.disk import DiskNeed, audit_disk_need, check_disk, disk_need, free_bytes
from certify.errors import RunDirError
from tests.conftest import run_certify
from tests.test_cost import LLAMA7B


def test_free_space_is_read_on_the_nearest_existing_folder(tmp_path: Path) -> None:
    free = free_bytes(tmp_path / "not" / "yet" / "made")
    assert 0 < free <= shutil.disk_usage(tmp_path).total


def test_a_need_larger_than_the_free_space_is_refused_naming_both(tmp_path: Path) -> None:
    need = DiskNeed(state=3e12, samples=1e6, records=5e5, reports=9e6)
    with pytest.raises(RunDirError) as e:
        check_disk(tmp_path, need, free=lambda path: 10**9)
    assert e.value.exit_code == 2
    assert "1.0 GB free" in e.value.message and "needs about 3.3 TB" in e.value.message
    assert "cell state 3.0 TB" in e.value.message and "--cell-state off" in (e.value.hint or "")
    check_disk(tmp_path, DiskNeed(0, 1e6, 5e5, 9e6))  # the real disk holds 12 MB


def test_the_kept_cell_state_of_a_7b_model_dominates_its_need() -> None:
    opts = AuditOptions(model=str(LLAMA7B), policy="ci-smoke")
    kept, not_kept = audit_disk_need(opts, True), audit_disk_need(opts, False)
    # Weights and two Adam states in float32, twice over during the atomic replace.
    assert kept.state >= 2 * 6.7e9 * 4 * 3
    assert not_kept.state == 0 and not_kept.total < 1e9


def test_an_audit_the_disk_cannot_hold_exits_2_before_anything_runs(tmp_path: Path) -> None:
    """A 7B model's kept state (about 160 GB) on this disk: refused before preflight (the
    fixture has a config and no weights, so any later stage would fail otherwise)."""
    need = audit_disk_need(AuditOptions(model=str(LLAMA7B), policy="ci-smoke"), True)
    if free_bytes(tmp_path) >= need.total:
        pytest.skip("this disk could hold a 7B model's kept cell state")
    out = tmp_path / "run"
    proc = run_certify("audit", str(LLAMA7B), "--policy", "ci-smoke", "--cell-state", "on",
                       "--out", str(out))
    assert proc.returncode == 2, proc.stderr
    assert "not enough disk for the run directory" in proc.stderr
    assert "free" in proc.stderr and "cell state" in proc.stderr
    assert not out.exists()


def test_a_resume_counts_only_the_cells_still_to_run(tmp_path: Path) -> None:
    """On --resume the finished cells' samples and records are on the disk already, and a
    cell that kept a state needs room for one more state beside it, not two."""
    from certify.conductor.preflight import on_disk
    from certify.cost.preview import workload
    from certify.run.cell_state import state_path

    opts = AuditOptions(model=str(LLAMA7B), policy="ci-smoke")
    digests: dict[str, str | None] = {"candidate": "a" * 64}
    costs = workload(opts, digests).costs
    full = next(c for c in costs if c.mode == "full")
    # A run directory as an earlier attempt left it: every cell finished but one full
    # fine-tuning cell, which kept its state at a checkpoint (and an errored cell's record,
    # which is retried, so it still counts).
    (tmp_path / "cells").mkdir()
    (tmp_path / "run.json").write_text(json.dumps(
        {"models": {"candidate": {"spec": str(LLAMA7B), "root_digest": digests["candidate"]}}}))
    errored = next(c for c in costs if c.mode == "lora")
    for c in costs:
        if c is not full:
            status = "error" if c is errored else "ok"
            (tmp_path / "cells" / f"{c.cell_id}.json").write_text(json.dumps({"status": status}))
    state_path(tmp_path, full.cell_id).parent.mkdir()
    state_path(tmp_path, full.cell_id).write_bytes(b"kept")

    before = audit_disk_need(opts, True)
    resumed = on_disk(tmp_path)
    assert resumed is not None and resumed.kept == {full.cell_id}
    assert resumed.finished == {c.cell_id for c in costs} - {full.cell_id, errored.cell_id}
    after = audit_disk_need(opts, True, resumed)
    # One 7B state (weights and two Adam moments in float32) instead of two.
    assert after.state == pytest.approx(before.state / 2) and after.state >= 6.7e9 * 4 * 3
    # Only the two unfinished cells' samples and records (about half of the plan's).
    left = disk_need([full, errored], opts.dtype, False)
    assert after.samples == left.samples and after.records == left.records
    assert 0 < after.samples < 0.6 * before.samples and after.records < 0.6 * before.records
    assert after.reports == before.reports  # the evidence and reports hold every cell
    # The placeholder plan of a fresh audit matches none of the run's cells: all count.
    assert audit_disk_need(opts, True, replace(resumed, digests={})).samples == before.samples
    assert on_disk(tmp_path / "no-run-here") is None
