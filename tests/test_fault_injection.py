"""SIGKILL an audit anywhere; `--resume` must finish with exactly the uninterrupted result.

An uninterrupted audit of tests/policies/fault-tiny.yaml records every fault point it
reaches (CERTIFY_TEST_FAULT_TRACE, see certify/_fault.py). Kill points are drawn from
that trace with a seeded RNG: in training, in generation, between a cell's samples and
its result, inside the atomic write of a cell result and of the evidence. Each killed
run is resumed with `--resume` and compared with the uninterrupted one: verdict,
every check, every cell's status, per-checkpoint metrics, losses and samples digest.
No partial file may be visible after a kill or left behind after the resume.

Every process runs with one thread so that floating-point results do not depend on
the thread count, and two kill/resume pairs run at a time to use both cores.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from certify._fault import FAULT_VAR, TRACE_VAR
from certify._io import sha256_file
from certify.evidence import Evidence
from tests.conftest import ROOT, run_certify

POLICY = ROOT / "tests" / "policies" / "fault-tiny.yaml"
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
SEED = 20240801


def audit(out: Path, *extra: str, fault: str | None = None, trace: Path | None = None,
          policy: Path = POLICY) -> Any:
    env = dict(ENV)
    if fault:
        env[FAULT_VAR] = fault
    if trace:
        env[TRACE_VAR] = str(trace)
    return run_certify("audit", "builtin:tiny-chat", "--policy", str(policy), "--out", str(out),
                       "--format", "md", "--quiet", *extra, env=env)


def reference_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], int]:
    """The uninterrupted run (made once per session and shared): dir, fault trace, exit."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp() / "fault-reference"
    with FileLock(str(base) + ".lock"):
        out, trace = base / "run", base / "trace.txt"
        if not (out / "evidence.json").is_file():
            shutil.rmtree(base, ignore_errors=True)
            base.mkdir()
            result = audit(out, trace=trace)
            assert result.returncode in (0, 1), result.stderr
            (base / "exit").write_text(str(result.returncode))
        return out, trace.read_text().split(), int((base / "exit").read_text())


@pytest.fixture(scope="module")
def reference(tiny_chat: Path, tmp_path_factory: pytest.TempPathFactory,
              ) -> tuple[Path, list[str], int]:
    return reference_run(tmp_path_factory)


def comparable(ev: Evidence) -> dict[str, Any]:
    """Everything a resumed run must reproduce exactly (timings excluded)."""
    assert ev.verdict is not None
    return {
        "verdict": ev.verdict.overall, "exit": ev.verdict.exit_code,
        "checks": [c.model_dump(include={"id", "verdict", "reason", "observed"})
                   for c in ev.verdict.checks],
        "cells": {c.id: {"status": c.status, "samples": c.samples_sha256,
                         "checkpoints": [cp.model_dump(exclude={"seconds"})
                                         for cp in c.checkpoints]} for c in ev.cells},
    }


def assert_no_partial_files(out: Path, *, allow_tmp: bool = False) -> None:
    """Readers see only whole files: every result parses and matches its recorded digest."""
    tmp = [p for p in out.rglob("*.tmp")]
    assert allow_tmp or not tmp, tmp
    assert all(p.name.startswith(".") for p in tmp), tmp  # never under a reader's name
    for cell in (out / "cells").glob("*.json"):
        record = json.loads(cell.read_text())
        samples = out / record["samples_file"]
        assert sha256_file(samples) == record["samples_sha256"], cell.name
    for samples in (out / "samples").glob("*.jsonl"):
        for line in samples.read_text().splitlines():
            json.loads(line)
    for line in (out / "events.jsonl").read_text().splitlines():
        json.loads(line)
    if (out / "evidence.json").exists():
        Evidence.read(out / "evidence.json")


def kill_points(trace: list[str], rng: random.Random) -> list[tuple[str, int]]:
    """One point in each phase: training, generation, between a cell's two files,
    inside the write of a cell result, inside the write of the evidence."""
    def nth(index: int) -> tuple[str, int]:
        return trace[index], trace[: index + 1].count(trace[index])

    positions = {p: [i for i, name in enumerate(trace) if name == p] for p in set(trace)}
    after_samples = [i + 1 for i in positions["samples_written"] if trace[i + 1] == "write"]
    evidence = after_samples[-1] + 1  # the write after the last cell result
    assert trace[evidence] == "write"
    return [nth(rng.choice(positions["train_step"])), nth(rng.choice(positions["generate"])),
            nth(rng.choice(positions["samples_written"])), nth(rng.choice(after_samples)),
            nth(evidence)]


def kill_and_resume(point: tuple[str, int], out: Path, expected: dict[str, Any],
                    expected_exit: int) -> None:
    name, n = point
    killed = audit(out, fault=f"kill:{name}@{n}")
    assert killed.returncode == -signal.SIGKILL, (point, killed.stderr)
    assert_no_partial_files(out, allow_tmp=True)
    resumed = audit(out, "--resume")
    assert resumed.returncode == expected_exit, (point, resumed.stderr)
    assert_no_partial_files(out)
    ev = Evidence.read(out / "evidence.json")
    assert comparable(ev) == expected, f"resume after a kill at {name}@{n} differs"
    assert len(ev.run["resumes"]) == 1 and ev.run["resumes"][0]["drift"] == []


def run_pairs(points: list[tuple[str, int]], tmp_path: Path, reference: Any,
              record_property: Any) -> int:
    """Kill at each point, resume, compare with the reference; the number that survived."""
    ref_dir, _, ref_exit = reference
    expected = comparable(Evidence.read(ref_dir / "evidence.json"))
    record_property("faults_injected", len(points))
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(kill_and_resume, p, tmp_path / f"{i}-{p[0]}-{p[1]}", expected,
                               ref_exit) for i, p in enumerate(points)]
        survived = sum(f.result() is None for f in futures)  # a failed resume raises here
    record_property("faults_survived", survived)
    return survived


def test_the_fault_trace_covers_every_phase(reference: Any) -> None:
    _, trace, _ = reference
    assert {"cell_start", "train_step", "generate", "write", "samples_written"} <= set(trace)
    assert trace.count("train_step") == 6 + 4  # both attacks' full budgets (no early stop)


def test_killed_audits_resume_to_the_uninterrupted_result(reference: Any, tmp_path: Path,
                                                          record_property: Any) -> None:
    """Three of the five phases in the default suite: in training, inside the write of a
    cell result, inside the write of the evidence (the slow sibling kills in all five)."""
    points = kill_points(reference[1], random.Random(SEED))
    assert len(set(points)) == 5
    points = [points[0], points[3], points[4]]
    assert run_pairs(points, tmp_path, reference, record_property) == len(points)


@pytest.mark.slow
def test_killed_audits_resume_in_every_phase(reference: Any, tmp_path: Path,
                                             record_property: Any) -> None:
    """Also in generation and between a cell's samples and its result."""
    points = kill_points(reference[1], random.Random(SEED))
    assert run_pairs(points, tmp_path, reference, record_property) == len(points)


@pytest.mark.slow
def test_killed_audits_resume_at_random_points(reference: Any, tmp_path: Path,
                                               record_property: Any) -> None:
    """Ten more points, uniform over the whole run after the manifest exists."""
    _, trace, _ = reference
    rng = random.Random(SEED + 1)
    indices = sorted(rng.sample(range(1, len(trace)), 10))
    points = [(trace[i], trace[: i + 1].count(trace[i])) for i in indices]
    assert run_pairs(points, tmp_path, reference, record_property) == len(points)


@pytest.mark.slow
def test_a_resume_killed_again_and_again_still_converges(reference: Any, tmp_path: Path,
                                                         record_property: Any) -> None:
    """Kill the first run and then three resumes in a row; the fifth process finishes."""
    ref_dir, _, ref_exit = reference
    out = tmp_path / "run"
    chain = ["train_step@4", "samples_written@1", "generate@2", "write@1"]  # write@1: run.json
    record_property("faults_injected", len(chain))
    for i, fault in enumerate(chain):
        killed = audit(out, *(["--resume"] if i else []), fault=f"kill:{fault}")
        assert killed.returncode == -signal.SIGKILL, (fault, killed.stderr)
        assert_no_partial_files(out, allow_tmp=True)
    final = audit(out, "--resume")
    assert final.returncode == ref_exit, final.stderr
    assert_no_partial_files(out)
    ev = Evidence.read(out / "evidence.json")
    assert comparable(ev) == comparable(Evidence.read(ref_dir / "evidence.json"))
    # The resume killed inside the write of its own manifest entry left no entry at all.
    assert len(ev.run["resumes"]) == len(chain) - 1
    record_property("faults_survived", len(chain))


# --------------------------------------------------------------------------- lock, drift

def copy_of(reference: Any, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(reference[0], out)
    return out


def test_a_second_process_cannot_use_a_locked_run_dir(reference: Any, tmp_path: Path) -> None:
    """Freeze a running audit (SIGSTOP keeps its lock); a second audit of the dir exits 2."""
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "certify", "audit", "builtin:tiny-chat", "--policy",
           str(POLICY), "--out", str(out), "--format", "md", "--quiet"]
    first = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **ENV},
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while first.poll() is None and not (out / "run.json").exists():
            time.sleep(0.1)
        first.send_signal(signal.SIGSTOP)
        manifest = (out / "run.json").read_bytes()
        second = audit(out, "--resume")
        assert second.returncode == 2, second.stderr
        assert "in use by another certify process" in second.stderr
        assert "hint:" in second.stderr and "Traceback" not in second.stderr
        assert (out / "run.json").read_bytes() == manifest  # the second touched nothing
    finally:
        first.send_signal(signal.SIGCONT)
    _, err = first.communicate()
    assert first.returncode == reference[2], err
    assert comparable(Evidence.read(out / "evidence.json")) == comparable(
        Evidence.read(reference[0] / "evidence.json"))


def _resumes(out: Path) -> list[dict[str, Any]]:
    resumes: list[dict[str, Any]] = json.loads((out / "run.json").read_text())["resumes"]
    return resumes


def test_resume_refuses_changed_policy_bytes_unless_allowed(reference: Any,
                                                            tmp_path: Path) -> None:
    out = copy_of(reference, tmp_path)
    policy = tmp_path / "policy.yaml"
    policy.write_bytes(POLICY.read_bytes() + b"# an edit after the run started\n")
    refused = audit(out, "--resume", policy=policy)
    assert refused.returncode == 2, refused.stderr
    assert "policy file bytes changed" in refused.stderr and "--allow-drift" in refused.stderr
    assert _resumes(out) == []
    allowed = audit(out, "--resume", "--allow-drift", policy=policy)
    assert allowed.returncode == reference[2], allowed.stderr
    resumes = Evidence.read(out / "evidence.json").run["resumes"]
    assert resumes[-1]["allowed"] and "policy file bytes changed" in resumes[-1]["drift"][0]


def test_resume_refuses_changed_versions_unless_allowed(reference: Any, tmp_path: Path) -> None:
    """The manifest says the run started under other torch and peft versions."""
    out = copy_of(reference, tmp_path)
    manifest = json.loads((out / "run.json").read_text())
    manifest["versions"].update(torch="2.0.0", peft="0.1.0")
    (out / "run.json").write_text(json.dumps(manifest))
    refused = audit(out, "--resume")
    assert refused.returncode == 2, refused.stderr
    assert "torch 2.0.0 →" in refused.stderr and "peft 0.1.0 →" in refused.stderr
    allowed = audit(out, "--resume", "--allow-drift")
    assert allowed.returncode == reference[2], allowed.stderr
    drift = Evidence.read(out / "evidence.json").run["resumes"][-1]["drift"]
    assert any(d.startswith("torch 2.0.0 →") for d in drift), drift


def test_resume_refuses_a_changed_model_unless_allowed(tiny_chat: Path, reference: Any,
                                                       tmp_path: Path) -> None:
    """A model directory whose files change between the start and the resume."""
    model = tmp_path / "model"
    shutil.copytree(tiny_chat, model)
    out = tmp_path / "run"
    started = run_certify("audit", str(model), "--policy", str(POLICY), "--out", str(out),
                          "--format", "md", "--quiet", env={**ENV, FAULT_VAR: "kill:cell_start@2"})
    assert started.returncode == -signal.SIGKILL, started.stderr
    before = {p.stem for p in (out / "cells").glob("*.json")}
    assert before  # the baseline cell finished before the kill
    (model / "README.md").write_text("edited after the audit started\n")
    refused = run_certify("audit", str(model), "--policy", str(POLICY), "--out", str(out),
                          "--resume", "--quiet", env=ENV)
    assert refused.returncode == 2, refused.stderr
    assert "candidate model's digest changed" in refused.stderr
    allowed = run_certify("audit", str(model), "--policy", str(POLICY), "--out", str(out),
                          "--resume", "--allow-drift", "--format", "md", "--quiet", env=ENV)
    assert allowed.returncode == reference[2], allowed.stderr
    ev = Evidence.read(out / "evidence.json")
    assert "digest changed" in ev.run["resumes"][-1]["drift"][0]
    # A new model digest means new cell ids: nothing measured on the old files is reused.
    assert "README.md" in ev.models["candidate"]["files"]
    assert not before & {c.id for c in ev.cells}
