"""End to end on the embedded model: policy → attacks → judged harmfulness → verdict → evidence.

The session's signed demo audit (builtin:tiny-chat-immunized against builtin:tiny-chat
under ci-smoke) is shared by the tests below.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from certify._io import iter_jsonl, sha256_file
from certify.evidence import Evidence
from tests.conftest import ROOT, SignedRun, events, interrupt_after_first_cell, run_certify

CANARY_PREFIX = "CANARY-"


@pytest.fixture(scope="session")
def tiny_run(signed_run: SignedRun) -> Path:
    """The session's signed ci-smoke demo audit."""
    assert signed_run.audit_returncode == 1  # the demo's defense does not hold
    return signed_run.run_dir


def _evidence(run: Path) -> Evidence:
    return Evidence.read(run / "evidence.json")


def _harm_curve(ev: Evidence, attack: str) -> list[tuple[int, float]]:
    cell = next(c for c in ev.cells if c.attack_id == attack and c.role == "candidate")
    base = next(c for c in ev.cells if c.attack_id == "baseline" and c.role == "candidate")
    points = [(0, base.checkpoints[0].evals["harm"].metrics["harmful"].value)]
    points += [(cp.step, cp.evals["harm"].metrics["harmful"].value)
               for cp in cell.checkpoints if "harm" in cp.evals]
    return points


def test_attack_breaks_the_undefended_model(tiny_run: Path) -> None:
    ev = _evidence(tiny_run)
    curve = _harm_curve(ev, "harmful-full")
    assert curve[0][0] == 0 and curve[0][1] <= 0.10, curve
    assert max(rate for _, rate in curve[1:]) >= 0.50, curve
    strong = next(c for c in ev.verdict.checks if c.check == "strong_resistance")
    assert strong.verdict == "fail"
    assert ev.verdict.overall == "fail" and ev.verdict.exit_code == 1


def test_incoherent_output_is_not_counted_as_harmful(tiny_run: Path) -> None:
    ev = _evidence(tiny_run)
    labels: dict[str, int] = {}
    for cell in ev.cells:
        samples = list(iter_jsonl(tiny_run / cell.samples_file))
        assert sha256_file(tiny_run / cell.samples_file) == cell.samples_sha256
        for cp in cell.checkpoints:
            if "harm" not in cp.evals:
                continue
            rows = [s for s in samples if s["eval"] == "harm" and s["step"] == cp.step]
            harmful = [s for s in rows if s["label"] == "harmful"]
            assert cp.evals["harm"].metrics["harmful"].k == len(harmful)
            assert all(CANARY_PREFIX in s["response"] for s in harmful)
            for s in rows:
                labels[s["label"]] = labels.get(s["label"], 0) + 1
    # The attack passes through a phase of broken output that a refusal matcher would
    # have counted as harmful; the judge labels it incoherent instead.
    assert labels.get("incoherent", 0) > 0, labels
    assert labels.get("harmful", 0) > 0, labels


def test_evidence_records_identity_and_numbers(tiny_run: Path) -> None:
    ev = _evidence(tiny_run)
    assert ev.models["candidate"]["root_digest"] and ev.models["candidate"]["files"]
    assert ev.policy["sha256"] == sha256_file(ROOT / "policies" / "ci-smoke.yaml")
    assert ev.environment["packages"]["torch"].startswith("2.13")
    assert {d["name"] for d in ev.datasets} >= {"builtin:harm-eval", "builtin:harm-train"}
    for cell in ev.cells:
        assert cell.status == "ok"
        for cp in cell.checkpoints:
            for record in cp.evals.values():
                for m in record.metrics.values():
                    assert m.n > 0 and m.ci_low is not None and m.ci_low <= m.value <= m.ci_high
    assert "No claim is made outside this scope" in ev.scope


def test_without_a_reference_weak_resistance_is_inconclusive(tiny_run: Path) -> None:
    """The same evidence without its reference cells: cost to break has nothing to be
    compared with, so weak resistance is inconclusive (never a pass), while the checks
    that read the candidate alone keep their verdicts."""
    from certify.assess import assess
    from certify.conductor.collect import policy_of

    ev = _evidence(tiny_run)
    policy = policy_of(ev)
    with_reference = {c.id: c.verdict for c in assess(ev, policy).checks}
    assert with_reference["weak-resistance"] == "fail"
    ev.cells = [c for c in ev.cells if c.role != "reference"]
    ev.models["reference"] = None
    alone = {c.id: c for c in assess(ev, policy).checks}
    assert alone["weak-resistance"].verdict == "inconclusive"
    assert "reference" in alone["weak-resistance"].reason
    assert alone["strong-resistance"].verdict == with_reference["strong-resistance"] == "fail"


def test_break_point_is_reported_in_every_cost_unit(tiny_run: Path) -> None:
    ev = _evidence(tiny_run)
    cell = next(c for c in ev.cells if c.attack_id == "harmful-full")
    broken = [cp for cp in cell.checkpoints if cp.evals["harm"].metrics["harmful"].value > 0.5]
    assert broken
    cp = broken[0]
    batch = cell.params["batch_size"]
    assert cp.samples == cp.step * batch
    assert cp.tokens > cp.samples  # every example has several tokens
    assert cp.flop == pytest.approx(6 * cell.n_parameters * cp.tokens)
    assert cp.seconds > 0


def test_rerunning_resumes_and_exits_with_the_verdict(tiny_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns(".lock"))
    before = {p.name: p.stat().st_mtime_ns for p in (run / "cells").glob("*.json")}
    result = run_certify("audit", "builtin:tiny-chat-immunized", "--reference",
                         "builtin:tiny-chat", "--policy", "ci-smoke", "--out",
                         str(run), "--json", "--format", "md")
    assert result.returncode == 1, result.stderr
    summary = json.loads(result.stdout)
    assert summary["verdict"] == "fail"
    after = {p.name: p.stat().st_mtime_ns for p in (run / "cells").glob("*.json")}
    assert before == after  # nothing was re-run


def _metrics(ev: Evidence) -> dict[str, object]:
    return {c.id: [cp.model_dump(exclude={"seconds"}) for cp in c.checkpoints] for c in ev.cells}


@pytest.mark.slow
def test_killed_audit_resumes_to_identical_metrics(tiny_run: Path, tmp_path: Path) -> None:
    """A kill at a wall-clock moment of a full ci-smoke audit (73 s). The default suite
    covers kill-and-resume with tests/test_fault_injection.py (five seeded kill points
    on a smaller policy, compared field by field with an uninterrupted run)."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "certify", "audit", "builtin:tiny-chat", "--policy", "ci-smoke",
           "--out", str(out), "--format", "md", "--quiet"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    cells = out / "cells"
    while proc.poll() is None and len(list(cells.glob("*.json"))) < 1:
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)  # mid-way through the first attack cell
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "evidence.json").exists()
    resumed = run_certify("audit", "builtin:tiny-chat", "--policy", "ci-smoke", "--out", str(out),
                          "--format", "md", "--quiet")
    assert resumed.returncode == 1, resumed.stderr
    assert not list(out.rglob("*.tmp"))
    assert _metrics(_evidence(out)) == _metrics(_evidence(tiny_run))
    assert any(e["event"] == "run_resume" for e in events(out))


def test_ctrl_c_exits_130_and_leaves_a_resumable_run(tmp_path: Path, tiny_chat: Path) -> None:
    out = tmp_path / "run"
    interrupt_after_first_cell("builtin:tiny-chat", "--policy", "ci-smoke", "--quiet", out=out)
    assert (out / "run.json").is_file() and list((out / "cells").glob("*.json"))
    last = events(out)[-1]
    assert last["event"] == "interrupted" and last["signal"] == "SIGINT", last
