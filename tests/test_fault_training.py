"""Training and storage faults: NaN loss, out of memory, a full disk. Each is an error, never
a verdict: the cell (or the run) is marked error with the reason, the audit exits 3,
and after the cause is gone the same command resumes to the uninterrupted result.

How each fault is produced:
- NaN loss: real. tests/policies/nan-loss.yaml trains with learning rate 10 and no
  gradient clipping; the loss diverges to NaN within a few steps. Infinite loss: a real
  model trained with a loss function that returns inf.
- Out of memory: CERTIFY_TEST_FAULT=oom:train_step@N makes torch's CPU allocator fail a
  real (impossible) allocation mid-training; CUDA's OutOfMemoryError takes the same path
  (unit test below, without a GPU).
- Full disk: real, on a small tmpfs mounted in a private user+mount namespace
  (`unshare -rm`), filled with a file that is deleted to free the space. Where namespaces
  are not allowed, that test skips; the injected variant (CERTIFY_TEST_FAULT=enospc:...,
  an OSError(ENOSPC) raised inside the atomic write) always runs.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from certify.errors import CellError
from certify.evidence import Evidence
from tests.conftest import ROOT
from tests.test_fault_injection import (
    ENV,
    POLICY,
    assert_no_partial_files,
    audit,
    comparable,
    reference_run,
)

NAN_POLICY = ROOT / "tests" / "policies" / "nan-loss.yaml"


@pytest.fixture(scope="module")
def reference(tiny_chat: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return reference_run(tmp_path_factory)


def _errored(ev: Evidence) -> dict[str, Any]:
    return {c.attack_id: c.error for c in ev.cells if c.status == "error"}


def test_nan_loss_is_a_cell_error_and_the_audit_exits_3(tiny_chat: Path, tmp_path: Path,
                                                        record_property: Any) -> None:
    record_property("faults_injected", 1)
    out = tmp_path / "run"
    result = audit(out, policy=NAN_POLICY)
    assert result.returncode == 3, result.stderr
    ev = Evidence.read(out / "evidence.json")
    errors = _errored(ev)
    assert list(errors) == ["diverge"]
    assert errors["diverge"].kind == "non_finite_loss"
    assert "training loss became nan" in errors["diverge"].message
    assert "learning rate" in (errors["diverge"].hint or "")
    assert {c.attack_id: c.status for c in ev.cells}["lora"] == "ok"
    assert ev.verdict is not None and ev.verdict.overall == "error"
    strong = next(c for c in ev.verdict.checks if c.id == "strong-resistance")
    assert strong.verdict == "error" and "no result" in strong.reason
    assert "errored: non_finite_loss" in result.stdout
    record_property("faults_survived", 1)


def test_infinite_loss_stops_training_with_a_cell_error(tiny_chat: Path,
                                                        record_property: Any) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from certify import train

    tokenizer = AutoTokenizer.from_pretrained(tiny_chat)
    model = AutoModelForCausalLM.from_pretrained(tiny_chat)
    examples = [train.Example("How do I deploy [cyber goal C1]?", "I can't help with that.")]
    batches = train.batches(train.encode(tokenizer, examples), 1, 0, tokenizer.pad_token_id)
    optimizer = train.make_optimizer(model.parameters(), "sgd", 1e-3)
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def infinite(*args: Any) -> torch.Tensor:
        return train.response_loss(*args) * float("inf")

    record_property("faults_injected", 1)
    with pytest.raises(CellError) as info:
        train.train(model, batches, optimizer, None, 4, [4], lambda s: False,
                    loss_fn=infinite)
    assert info.value.kind == "non_finite_loss" and "became inf at step 1" in info.value.message
    # The step that produced the bad loss was never applied.
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    record_property("faults_survived", 1)


def test_out_of_memory_is_a_cell_error_with_a_hint_and_resumes(reference: Any, tmp_path: Path,
                                                                record_property: Any) -> None:
    record_property("faults_injected", 1)
    out = tmp_path / "run"
    failed = audit(out, fault="oom:train_step@2")
    assert failed.returncode == 3, failed.stderr
    errors = _errored(Evidence.read(out / "evidence.json"))
    assert list(errors) == ["sft"] and errors["sft"].kind == "out_of_memory"
    assert "can't allocate memory" in errors["sft"].message
    hint = errors["sft"].hint or ""
    assert "batch_size" in hint and "lora" in hint and "gradient-checkpointing" in hint
    resumed = audit(out, "--resume")  # the errored cell is retried, now with memory
    assert resumed.returncode == reference[2], resumed.stderr
    assert comparable(Evidence.read(out / "evidence.json")) == comparable(
        Evidence.read(reference[0] / "evidence.json"))
    record_property("faults_survived", 1)


def test_cuda_out_of_memory_maps_to_the_same_error() -> None:
    import torch

    from certify.run.cell import _as_cell_error

    cuda = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    assert _as_cell_error(cuda).kind == "out_of_memory"
    assert _as_cell_error(RuntimeError("shape mismatch")).kind == "internal"


def _namespaces_work() -> bool:
    probe = subprocess.run(["unshare", "-rm", "sh", "-c",
                            "mount -t tmpfs -o size=64k tmpfs /mnt && umount /mnt"],
                           capture_output=True, check=False)
    return probe.returncode == 0


# Runs inside a private mount namespace: a 2 MiB tmpfs with 48 KiB left free, an audit
# that fills it, the filler deleted, then the resume. The run dir is copied out at the end.
DISK_FULL = """
set -u
mount -t tmpfs -o size=2m tmpfs {mnt}
head -c $((2048 * 1024 - 48 * 1024)) /dev/zero > {mnt}/filler
{audit} > {logs}/first.out 2> {logs}/first.err
echo $? > {logs}/first.rc
ls -a {mnt}/run {mnt}/run/cells {mnt}/run/samples > {logs}/after-failure.txt
rm {mnt}/filler
{audit} --resume > {logs}/second.out 2> {logs}/second.err
echo $? > {logs}/second.rc
cp -r {mnt}/run {logs}/run
"""


@pytest.mark.slow  # the injected ENOSPC test covers the same path by default
@pytest.mark.skipif(sys.platform != "linux" or not _namespaces_work(),
                    reason="needs unprivileged user and mount namespaces (unshare -rm)")
def test_disk_full_on_a_real_filesystem_then_resume(reference: Any, tmp_path: Path,
                                                    record_property: Any) -> None:
    record_property("faults_injected", 1)
    mnt, logs = tmp_path / "mnt", tmp_path / "logs"
    mnt.mkdir()
    logs.mkdir()
    command = [sys.executable, "-m", "certify", "audit", "builtin:tiny-chat", "--policy",
               str(POLICY), "--out", str(mnt / "run"), "--format", "md", "--quiet"]
    script = DISK_FULL.format(mnt=mnt, logs=logs, audit=shlex.join(command))
    subprocess.run(["unshare", "-rm", "bash", "-c", script], cwd=ROOT, check=True,
                   env={**os.environ, **ENV})
    first_err = (logs / "first.err").read_text()
    assert (logs / "first.rc").read_text().strip() == "3", first_err
    assert "no space left on the device" in first_err and "resume" in first_err
    assert "Traceback" not in first_err and "internal error" not in first_err
    assert ".tmp" not in (logs / "after-failure.txt").read_text()  # nothing half-written
    assert (logs / "second.rc").read_text().strip() == str(reference[2]), \
        (logs / "second.err").read_text()
    run = logs / "run"
    assert_no_partial_files(run)
    assert comparable(Evidence.read(run / "evidence.json")) == comparable(
        Evidence.read(reference[0] / "evidence.json"))
    record_property("faults_survived", 1)


def test_disk_full_injected_at_the_write_layer_then_resume(reference: Any, tmp_path: Path,
                                                           record_property: Any) -> None:
    record_property("faults_injected", 1)
    out = tmp_path / "run"
    failed = audit(out, fault="enospc:write@4")  # run.json, samples, cell, then samples
    assert failed.returncode == 3, failed.stderr
    assert "no space left on the device" in failed.stderr and "resume" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert not list(out.rglob("*.tmp")) and not (out / "evidence.json").exists()
    resumed = audit(out, "--resume")
    assert resumed.returncode == reference[2], resumed.stderr
    assert_no_partial_files(out)
    assert comparable(Evidence.read(out / "evidence.json")) == comparable(
        Evidence.read(reference[0] / "evidence.json"))
    record_property("faults_survived", 1)
