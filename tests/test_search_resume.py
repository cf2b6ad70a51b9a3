"""SIGKILL a search audit between trials and inside one; `--resume` gives the same study.

The study lives in the run directory (studies/<cell id>.journal). A kill after a trial
was told leaves the finished trials; a kill inside a trial leaves it running, and the
resumed search runs it again under its own number with the same parameters. Either way
the finished trials (parameters and objective), the kept trajectory and the verdict
equal an uninterrupted run's. Each audit is a fresh process with one thread, so the
arithmetic, and with it every objective, is the same in all of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from certify._fault import FAULT_VAR
from certify.evidence import Evidence
from tests.conftest import ROOT, run_certify

POLICY = ROOT / "tests" / "policies" / "search-resume.yaml"
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def audit(out: Path, *extra: str, fault: str | None = None) -> Any:
    env = {**ENV, **({FAULT_VAR: fault} if fault else {})}
    return run_certify("audit", "builtin:tiny-chat", "--policy", str(POLICY), "--out", str(out),
                       "--format", "md", "--quiet", *extra, env=env)


def study(out: Path) -> dict[str, Any]:
    ev = Evidence.model_validate_json((out / "evidence.json").read_text())
    cell = next(c for c in ev.cells if c.attack_id == "search")
    search = cell.notes["search"]
    done = [(t["config"], t["worst_harmful"], t["worst_step"]) for t in search["trials"]
            if t["state"] == "complete"]
    return {"done": done, "winner": search["trials"][search["worst_trial"]]["config"],
            "checkpoints": [cp.model_dump(exclude={"seconds"}) for cp in cell.checkpoints],
            "verdict": ev.verdict.overall if ev.verdict else None,
            "states": [t["state"] for t in search["trials"]],
            "numbers": [(t["trial"], t["config"]) for t in search["trials"]]}


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["kill:search_trial@2", "kill:train_step@7"])
def test_a_killed_search_resumes_with_the_same_study(tiny_chat: Path, tmp_path: Path,
                                                     fault: str) -> None:
    whole = audit(tmp_path / "whole")
    assert whole.returncode in (0, 1), whole.stderr
    expected = study(tmp_path / "whole")
    assert len(expected["done"]) == 4 and expected["states"] == ["complete"] * 4
    assert (tmp_path / "whole" / "studies").is_dir()

    killed = audit(tmp_path / "killed", fault=fault)
    assert killed.returncode < 0 or killed.returncode == 137, killed.stderr
    journals = list((tmp_path / "killed" / "studies").glob("*.journal"))
    assert len(journals) == 1 and journals[0].stat().st_size > 0
    resumed = audit(tmp_path / "killed", "--resume")
    assert resumed.returncode == whole.returncode, resumed.stderr
    got = study(tmp_path / "killed")
    assert got["done"] == expected["done"]
    assert got["winner"] == expected["winner"] and got["verdict"] == expected["verdict"]
    assert got["checkpoints"] == expected["checkpoints"]
    # Inside a trial (step 7: the second trial's third step) the trial is left running: it
    # runs again under its own number, so the trials are numbered as in the whole run and
    # none is recorded as failed; between trials nothing is lost.
    assert got["states"] == expected["states"] == ["complete"] * 4
    assert got["numbers"] == expected["numbers"]
