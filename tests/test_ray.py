"""The Ray executor on a real local Ray cluster started by the tests (slow).

The acceptance test: a ci-smoke audit through ``--executor ray`` gives the same
per-cell metrics and verdicts as ``--executor local``. Both run with one torch
thread per worker, so the float arithmetic, and hence greedy decoding, is the same.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from certify.conductor import AuditOptions, audit
from certify.evidence import Evidence
from tests._scale import SCALE_POLICY, cell_metrics, check_verdicts
from tests.conftest import interrupt_after_first_cell, run_certify

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster() -> Any:
    from certify.run.ray_executor import runtime_env

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env=runtime_env())
    yield ray
    ray.shutdown()


def _events(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]


def _audit(out: Path, executor: str, policy: str = "ci-smoke") -> Any:
    return audit(AuditOptions(model="builtin:tiny-chat", policy=policy, out=out,
                              executor=executor, formats=("md",)))


def test_ray_audit_gives_the_same_cells_as_local(cluster: Any, tiny_chat: Path,
                                                 tmp_path: Path) -> None:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each Ray actor does (one CPU each)
    try:
        local = _audit(tmp_path / "local", "local")
    finally:
        torch.set_num_threads(threads)
    distributed = _audit(tmp_path / "ray", "ray")
    assert distributed.exit_code == local.exit_code == 1
    assert distributed.evidence.run["executor"] == "ray"
    assert cell_metrics(distributed.evidence) == cell_metrics(local.evidence)
    assert check_verdicts(distributed.evidence) == check_verdicts(local.evidence)
    events = _events(tmp_path / "ray")
    started = next(e for e in events if e["event"] == "ray_start")
    assert started["actors"] == 2 and started["resources"]["num_cpus"] == 1
    stats = next(e for e in events if e["event"] == "ray_done")["actors"]
    # Each actor loaded the model once, however many cells it ran.
    assert sum(a["cells"] for a in stats) == len(local.evidence.cells) > len(stats)
    assert [a["model_loads"] for a in stats] == [1, 1]


def _kill_first_running_actor(run: Path, stop: threading.Event) -> list[int]:
    """SIGKILL the Ray worker process running the run's first attack cell."""
    import psutil

    killed: list[int] = []
    while not stop.is_set() and not killed:
        started = [e for e in _events(run) if e["event"] == "cell_start"] if (
            run / "events.jsonl").exists() else []
        if any("harmful-full" in e["cell"] for e in started):
            time.sleep(1.0)  # well inside the cell: training has begun
            for proc in psutil.process_iter(["pid", "cmdline"]):
                if "ray::CellActor.run" in " ".join(proc.info["cmdline"] or []):
                    os.kill(proc.info["pid"], signal.SIGKILL)
                    killed.append(proc.info["pid"])
                    break
        time.sleep(0.2)
    return killed


def test_a_dead_worker_becomes_an_error_cell_and_resumes(cluster: Any, tiny_chat: Path,
                                                         tmp_path: Path) -> None:
    out = tmp_path / "run"
    stop = threading.Event()
    killed: list[int] = []
    killer = threading.Thread(target=lambda: killed.extend(_kill_first_running_actor(out, stop)))
    killer.start()
    try:
        first = _audit(out, "ray", SCALE_POLICY)
    finally:
        stop.set()
        killer.join()
    assert killed, "no running Ray actor was found to kill"
    dead = [c for c in first.evidence.cells if c.status == "error"]
    assert len(dead) == 1 and dead[0].error and dead[0].error.kind == "worker_died"
    assert first.exit_code == 3 and first.evidence.verdict.overall == "error"
    # The other cells ran on the remaining and the replacement actors.
    assert sum(c.status == "ok" for c in first.evidence.cells) == len(first.evidence.cells) - 1
    resumed = _audit(out, "ray", SCALE_POLICY)
    assert resumed.exit_code == 1 and all(c.status == "ok" for c in resumed.evidence.cells)
    reruns = [e["cell"] for e in _events(out) if e["event"] == "cell_start"]
    assert reruns.count(dead[0].id) == 2
    assert all(reruns.count(c.id) == 1 for c in resumed.evidence.cells if c.id != dead[0].id)


def test_ctrl_c_stops_the_ray_run_with_130_and_it_resumes(tiny_chat: Path,
                                                          tmp_path: Path) -> None:
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    interrupt_after_first_cell("builtin:tiny-chat", "--policy", SCALE_POLICY, "--executor", "ray",
                               "--format", "md", "--quiet", out=out, env=env)
    done = {p.stem for p in (out / "cells").glob("*.json")}
    assert done and not (out / "evidence.json").exists()
    resumed = run_certify("audit", "builtin:tiny-chat", "--policy", SCALE_POLICY, "--out",
                          str(out), "--executor", "ray", "--format", "md", "--quiet",
                          env={"RAY_ADDRESS": ""})
    assert resumed.returncode == 1, resumed.stderr
    ev = Evidence.read(out / "evidence.json")
    assert ev.run["status"] == "complete" and ev.run["resumes"]
    starts = [e["cell"] for e in _events(out) if e["event"] == "cell_start"]
    assert all(starts.count(cell) == 1 for cell in done)  # finished cells were not re-run
