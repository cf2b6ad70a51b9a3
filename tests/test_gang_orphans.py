"""A gang rank does not outlive a driver killed by SIGKILL (certify.run.gang.die_with_driver)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

DRIVER = """
import multiprocessing, sys, time

from certify.run.gang import die_with_driver


def rank():
    die_with_driver()
    print("ready", flush=True)
    time.sleep(120)


if __name__ == "__main__":
    p = multiprocessing.get_context("spawn").Process(target=rank, daemon=True)
    p.start()
    print(p.pid, flush=True)
    time.sleep(120)
"""


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for a reaper that may never come in a container."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_rank_dies_with_a_driver_killed_by_sigkill(tmp_path: Path) -> None:
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    driver = subprocess.Popen([sys.executable, str(script)], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert driver.stdout is not None
    rank = int(driver.stdout.readline())
    assert driver.stdout.readline().strip() == "ready"
    assert _alive(rank)
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=30)
    deadline = time.monotonic() + 30
    while _alive(rank) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(rank), "the rank outlived its SIGKILLed driver"
