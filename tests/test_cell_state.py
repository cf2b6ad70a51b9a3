"""Resume inside a cell: a cell killed between two checkpoints goes on from the first.

`--cell-state on` (the tiny demo model is far below the cost model's threshold, so the
default would keep nothing) makes each cell keep its training state at its evaluated
checkpoints. A kill is injected after an optimizer step that follows a checkpoint
(certify/_fault.py); `--resume` must then run only the steps after that checkpoint,
which the resumed process's fault trace counts, and end with exactly the uninterrupted
run's records: verdict, checks, every checkpoint's numbers and losses, samples digests.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from certify.conductor.options import AuditOptions
from certify.conductor.preflight import keep_cell_state
from certify.evidence import Evidence
from tests.conftest import ROOT, events
from tests.test_fault_injection import (
    POLICY,
    assert_no_partial_files,
    audit,
    comparable,
    reference_run,
)

LORA_OVERLAY = ROOT / "tests" / "policies" / "cell-state-lora-overlay.yaml"
FSDP_OVERLAY = ROOT / "tests" / "policies" / "cell-state-fsdp-overlay.yaml"


@pytest.fixture(scope="module")
def reference(tiny_chat: Path, tmp_path_factory: pytest.TempPathFactory,
              ) -> tuple[Path, list[str], int]:
    return reference_run(tmp_path_factory)


def kill_and_resume(out: Path, kill_at: str, *extra: str) -> tuple[Evidence, list[str]]:
    """Kill at ``kill_at`` with cell state kept, resume; the evidence and the resume's trace."""
    killed = audit(out, "--cell-state", "on", *extra, fault=f"kill:{kill_at}")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert_no_partial_files(out, allow_tmp=True)
    assert len(list((out / "partial").glob("*.pt"))) == 1  # the latest state only
    trace = out.parent / "resume-trace.txt"
    resumed = audit(out, "--cell-state", "on", "--resume", *extra, trace=trace)
    assert resumed.returncode in (0, 1), resumed.stderr
    assert_no_partial_files(out)
    assert not list((out / "partial").iterdir())  # deleted once the cell's result is written
    assert [e for e in events(out) if e.get("kept_state")], "the cell did not find its state"
    return Evidence.read(out / "evidence.json"), trace.read_text().split()


def test_a_full_fine_tuning_cell_killed_between_checkpoints_resumes_from_the_first(
        reference: Any, tmp_path: Path) -> None:
    ref_dir, ref_trace, ref_exit = reference
    # sft trains 6 steps with a checkpoint at 3; lora then trains 4. Kill after step 5.
    ev, trace = kill_and_resume(tmp_path / "run", "train_step@5")
    assert ev.verdict is not None and ev.verdict.exit_code == ref_exit
    assert comparable(ev) == comparable(Evidence.read(ref_dir / "evidence.json"))
    assert ref_trace.count("train_step") == 6 + 4
    assert trace.count("train_step") == 3 + 4  # sft's steps 4-6 and lora: 1-3 were not redone


@pytest.mark.slow  # the full fine-tuning kill covers resume inside a cell by default
def test_a_lora_cell_killed_between_checkpoints_resumes_from_the_first(
        tiny_chat: Path, tmp_path: Path) -> None:
    whole = audit(tmp_path / "whole", "--overlay", str(LORA_OVERLAY))
    assert whole.returncode in (0, 1), whole.stderr
    # sft's 6 steps, then lora's steps 1-3 (a checkpoint at 2): killed after lora's step 3.
    ev, trace = kill_and_resume(tmp_path / "run", "train_step@9", "--overlay", str(LORA_OVERLAY))
    assert comparable(ev) == comparable(Evidence.read(tmp_path / "whole" / "evidence.json"))
    lora = next(c for c in ev.cells if c.attack_id == "lora")
    assert [cp.step for cp in lora.checkpoints] == [2, 4]
    assert trace.count("train_step") == 2  # lora's steps 3 and 4 only


def test_a_graceful_stop_between_checkpoints_keeps_the_step_it_stopped_at(
        reference: Any, tmp_path: Path) -> None:
    """SIGTERM (injected after sft's step 4, between its checkpoints at 3 and 6): the cell
    keeps step 4 before it stops, so the two processes run each optimizer step once."""
    ref_dir, _, ref_exit = reference
    out, first, second = tmp_path / "run", tmp_path / "first.txt", tmp_path / "second.txt"
    stopped = audit(out, "--cell-state", "on", fault="term:train_step@4", trace=first)
    assert stopped.returncode == 130, stopped.stderr
    assert "interrupted: re-run the same command to resume" in stopped.stderr
    last = events(out)[-1]
    assert last["event"] == "interrupted" and last["signal"] == "SIGTERM", last
    assert_no_partial_files(out)  # a graceful stop leaves not even a temporary file
    assert len(list((out / "partial").glob("*.pt"))) == 1
    resumed = audit(out, "--cell-state", "on", "--resume", trace=second)
    assert resumed.returncode == ref_exit, resumed.stderr
    assert comparable(Evidence.read(out / "evidence.json")) == comparable(
        Evidence.read(ref_dir / "evidence.json"))
    assert first.read_text().split().count("train_step") == 4
    assert second.read_text().split().count("train_step") == 2 + 4  # sft's 5-6, lora's 1-4


def test_auto_keeps_no_state_for_the_tiny_demo_but_on_and_off_are_obeyed() -> None:
    opts = AuditOptions(model="builtin:tiny-chat", policy=str(POLICY))
    assert keep_cell_state(opts) is False  # a cell of the demo takes seconds
    for choice, expected in (("on", True), ("off", False)):
        opts.cell_state = choice
        assert keep_cell_state(opts) is expected


def fsdp_audit(out: Path, overlay: Path, fault_rank: int, **env: str) -> Any:
    """fault-tiny with ``overlay``, ``--fsdp 2`` and kept cell state; a fault in ``env``
    is injected in the gang's process of rank ``fault_rank`` only."""
    from certify._fault import RANK_VAR
    from tests.conftest import run_certify
    from tests.test_fault_injection import ENV

    return run_certify("audit", "builtin:tiny-chat", "--policy", str(POLICY), "--overlay",
                       str(overlay), "--fsdp", "2", "--cell-state", "on", "--out", str(out),
                       "--format", "md", "--quiet",
                       env={**ENV, RANK_VAR: str(fault_rank), **env})


@pytest.mark.slow  # two FSDP gangs of two processes (the local LoRA kill covers the keeper)
def test_a_lora_cell_in_an_fsdp_gang_killed_between_checkpoints_resumes_from_the_first(
        tiny_chat: Path, tmp_path: Path) -> None:
    """With --fsdp the leader runs LoRA cells alone, so it keeps their state as the local
    executor does; the driver deletes it once the cell's result is written."""
    from certify._fault import FAULT_VAR, TRACE_VAR

    def run(out: Path, **env: str) -> Any:
        return fsdp_audit(out, LORA_OVERLAY, 0, **env)

    whole = run(tmp_path / "whole")
    assert whole.returncode in (0, 1), whole.stderr
    out = tmp_path / "run"
    # The leader runs sft's 6 sharded steps, then lora's 1-3 (a checkpoint at 2): killed.
    killed = run(out, **{FAULT_VAR: "kill:train_step@9"})
    assert killed.returncode == 3, killed.stderr  # the lost cell is a worker_died error
    assert len(list((out / "partial").glob("*.pt"))) == 1
    trace = tmp_path / "trace.txt"
    resumed = run(out, **{TRACE_VAR: str(trace)})
    assert resumed.returncode == whole.returncode, resumed.stderr
    assert not list((out / "partial").iterdir())
    assert [e for e in events(out) if e.get("kept_state")], "the cell did not find its state"
    assert comparable(Evidence.read(out / "evidence.json")) == comparable(
        Evidence.read(tmp_path / "whole" / "evidence.json"))
    assert trace.read_text().split().count("train_step") == 2  # lora's steps 3 and 4 only


@pytest.mark.slow  # five audits with FSDP gangs; tests/test_fsdp_state.py is the default sibling
def test_a_sharded_cell_killed_between_or_inside_its_saves_resumes_from_the_last_whole_state(
        tiny_chat: Path, tmp_path: Path) -> None:
    """--fsdp 2: sft's 6 steps are sharded over two gloo processes, kept at checkpoints 2
    and 4. Rank 1 is killed after its step 5 (the state of step 4 is whole), or inside
    the write of its shard of step 4 (the state of step 2 is the last whole one); each
    resume runs only the steps after that state and ends with the uninterrupted records."""
    import torch

    from certify._fault import FAULT_VAR, TRACE_VAR

    def run(out: Path, **env: str) -> Any:
        return fsdp_audit(out, FSDP_OVERLAY, 1, **env)

    whole = run(tmp_path / "whole")
    assert whole.returncode in (0, 1), whole.stderr
    expected = comparable(Evidence.read(tmp_path / "whole" / "evidence.json"))
    # (fault on rank 1, the step kept, sft's steps each rank runs again after it)
    for fault, kept_step, again in (("train_step@5", 4, 2), ("write@2", 2, 4)):
        out = tmp_path / fault.replace("@", "-")
        killed = run(out, **{FAULT_VAR: f"kill:{fault}"})
        assert killed.returncode == 3, killed.stderr  # the lost cell is a worker_died error
        [manifest] = (out / "partial").glob("*.pt")
        cell = json.loads(torch.load(manifest, weights_only=True)["cell"])
        assert (cell["step"], cell["world"]) == (kept_step, 2), fault
        shards = out / "partial" / f"{manifest.stem}.shards"
        assert (shards / f"call1-step{kept_step}" / "rank1.pt").is_file()
        trace = tmp_path / f"{fault}.trace"
        resumed = run(out, **{TRACE_VAR: str(trace)})
        assert resumed.returncode == whole.returncode, resumed.stderr
        assert not list((out / "partial").iterdir())  # deleted once the result is written
        assert [e for e in events(out) if e.get("kept_state")], "the cell did not find its state"
        assert comparable(Evidence.read(out / "evidence.json")) == expected, fault
        # Only sft is run again (a fresh gang ran lora after the kill), and both ranks
        # trace its steps: those after the kept one, twice.
        assert trace.read_text().split().count("train_step") == 2 * again, fault
