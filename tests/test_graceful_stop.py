"""SIGTERM and SIGINT stop an audit at its next safe point; a re-run finishes it.

Real subprocesses of `certify audit` on tests/policies/fault-tiny.yaml, signalled while
a cell trains; the resumed run is compared with the uninterrupted reference run of
tests/test_fault_injection.py (made once per session), field by field.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from certify import stopping
from certify.evidence import Evidence
from tests.conftest import events, expect_interrupted, run_certify, start_audit, wait_for
from tests.test_fault_injection import (
    ENV,
    POLICY,
    assert_no_partial_files,
    comparable,
    reference_run,
)


@pytest.fixture(scope="module")
def reference(tiny_chat: Path, tmp_path_factory: pytest.TempPathFactory,
              ) -> tuple[Path, list[str], int]:
    return reference_run(tmp_path_factory)


def _start(out: Path) -> Any:
    return start_audit("builtin:tiny-chat", "--policy", str(POLICY), "--format", "md",
                       "--quiet", out=out, env={**os.environ, **ENV})


def _training_started(out: Path) -> bool:
    """The second cell has started: the baseline is done and the sft cell trains."""
    return sum(e["event"] == "cell_start" for e in events(out)) >= 2


def _resume_matches(out: Path, reference: Any) -> tuple[Evidence, str]:
    """Resume (with progress lines, unlike ``audit``); the evidence and the stderr."""
    ref_dir, _, ref_exit = reference
    resumed = run_certify("audit", "builtin:tiny-chat", "--policy", str(POLICY), "--out",
                          str(out), "--format", "md", "--resume", env=ENV)
    assert resumed.returncode == ref_exit, resumed.stderr
    assert_no_partial_files(out)
    ev = Evidence.read(out / "evidence.json")
    assert comparable(ev) == comparable(Evidence.read(ref_dir / "evidence.json"))
    return ev, resumed.stderr


def test_sigterm_stops_at_a_safe_point_exits_130_and_the_rerun_finishes(
        reference: Any, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = _start(out)
    wait_for(proc, lambda: _training_started(out))
    proc.send_signal(signal.SIGTERM)
    err = expect_interrupted(proc)
    assert "SIGTERM received; stopping at the next safe point" in err
    last = events(out)[-1]
    assert last["event"] == "interrupted", last
    assert last["signal"] == "SIGTERM" and last["immediate"] is False
    assert last["cells_done"] >= 1
    assert not (out / "evidence.json").exists()
    assert_no_partial_files(out)  # a graceful stop leaves not even a temporary file
    ev, err = _resume_matches(out, reference)
    assert len(ev.run["resumes"]) == 1
    sft = next(c for c in ev.cells if c.attack_id == "sft")
    assert f"{sft.id}: step 3/6 · loss " in err  # the progress line inside the cell
    log = events(out)
    cut = next(i for i, e in enumerate(log) if e["event"] == "interrupted")
    kept = {e["cell"] for e in log[:cut] if e["event"] == "cell_done"}
    starts = [e["cell"] for e in log if e["event"] == "cell_start"]
    assert kept and all(starts.count(cell) == 1 for cell in kept)  # finished cells not re-run
    assert starts[1] not in kept  # the stop landed inside the training cell, not after it


@pytest.mark.slow  # the first-signal test runs by default
def test_a_second_signal_stops_at_once_still_130_and_resumable(reference: Any,
                                                              tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = _start(out)
    wait_for(proc, lambda: _training_started(out))
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGINT)  # another signal number: the kernel cannot merge them
    expect_interrupted(proc)
    last = events(out)[-1]
    assert last["event"] == "interrupted" and last["immediate"] is True, last
    assert not (out / "evidence.json").exists()
    assert_no_partial_files(out, allow_tmp=True)  # stopped anywhere: at most a hidden temp
    _resume_matches(out, reference)


def test_stop_requests_wait_for_a_safe_point_and_handlers_are_restored() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with stopping.on_signals():
        stopping.check()  # nothing asked yet
        os.kill(os.getpid(), signal.SIGTERM)  # handled before os.kill returns to Python
        assert stopping.requested() == "SIGTERM" and not stopping.immediate()
        with pytest.raises(stopping.StopRequested):
            stopping.check()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)  # the second signal raises where it lands
        assert stopping.immediate()
    assert signal.getsignal(signal.SIGTERM) is before and stopping.requested() is None
    stopping.check()
