"""The disk check before an audit: the run directory's need against the free space."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from certify.conductor import AuditOptions
from certify.cost.disk import DiskNeed, audit_disk_need, check_disk, free_bytes
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
