"""Shared test set-up: offline Hugging Face, a persistent demo-model cache, slow marker.

Demo models are built once per cache (about a minute each) under .cache/certify in
the checkout, or CERTIFY_CACHE_DIR. Slow tests run with --runslow.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
if os.environ.get("PYTEST_XDIST_WORKER"):
    # One torch thread per worker (and per audit it starts): two workers share two cores.
    os.environ["OMP_NUM_THREADS"] = "1"
os.environ.setdefault("CERTIFY_CACHE_DIR", str(ROOT / ".cache" / "certify"))
for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ[var] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("HF_DATASETS_CACHE", str(ROOT / ".cache" / "hf-datasets"))
os.environ.setdefault("MPLCONFIGDIR", tempfile.mkdtemp(prefix="certify-mpl-"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", help="run slow tests")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_chat() -> Path:
    from certify.demo.models import ensure_built

    return ensure_built("tiny-chat")


def run_certify(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
                timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run the certify CLI in a fresh interpreter, as a user would."""
    return subprocess.run([sys.executable, "-m", "certify", *args], capture_output=True,
                          text=True, cwd=cwd or ROOT, env={**os.environ, **(env or {})},
                          timeout=timeout)


@pytest.fixture
def certify_cli():
    return run_certify


def start_audit(*audit_args: str, out: Path, env: dict[str, str] | None = None,
                ) -> subprocess.Popen[str]:
    """Start ``certify audit`` as a shell without job control starts ``cmd &``: with SIGINT
    ignored. Python then never raises KeyboardInterrupt; certify's own handler
    (certify/stopping.py) must stop it anyway. (An audit started so, which Ctrl-C did
    not reach, is why the Ctrl-C test once finished the audit and exited 1.)"""
    return subprocess.Popen([sys.executable, "-m", "certify", "audit", *audit_args,
                             "--out", str(out)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))


def events(out: Path) -> list[dict[str, Any]]:
    """The run directory's events.jsonl, parsed (no file yet: none)."""
    path = out / "events.jsonl"
    lines = path.read_text().splitlines() if path.is_file() else []
    return [json.loads(line) for line in lines if line.endswith("}")]


def wait_for(proc: subprocess.Popen[str], ready: Callable[[], bool]) -> None:
    while proc.poll() is None and not ready():
        time.sleep(0.1)
    assert proc.poll() is None, "the audit ended before the signal could be sent"


def expect_interrupted(proc: subprocess.Popen[str]) -> str:
    """Asserts what every interrupted audit must do: exit 130 and say how to resume."""
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 130, err
    assert "interrupted: re-run the same command to resume" in err, err
    return err


def interrupt_after_first_cell(*audit_args: str, out: Path, env: dict[str, str] | None = None,
                               sig: int = signal.SIGINT) -> str:
    """Start ``certify audit``, send ``sig`` (Ctrl-C) once a cell is finished; its stderr."""
    proc = start_audit(*audit_args, out=out, env=env)
    wait_for(proc, lambda: bool(list((out / "cells").glob("*.json"))))
    proc.send_signal(sig)
    return expect_interrupted(proc)


@dataclass(frozen=True)
class SignedRun:
    run_dir: Path
    private_key: Path
    public_key: Path
    audit_stdout: str
    audit_returncode: int


def _signed_audit(root: Path, *audit_args: str) -> SignedRun:
    """Make a key pair under ``root`` and run a signed ci-smoke audit into ``root/run``."""
    keys = run_certify("keygen", "--out", str(root / "keys"))
    assert keys.returncode == 0, keys.stderr
    run_dir = root / "run"
    out = run_certify("audit", *audit_args, "--policy", "ci-smoke", "--out", str(run_dir),
                      "--key", str(root / "keys" / "certify.key"))
    assert out.returncode in (0, 1), out.stderr
    return SignedRun(run_dir, root / "keys" / "certify.key", root / "keys" / "certify.pub",
                     out.stdout, out.returncode)


def _shared_root(factory: pytest.TempPathFactory) -> Path:
    """A directory every pytest-xdist worker of this session sees (the session's own
    temporary root without xdist)."""
    base = factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def _shared_audit(factory: pytest.TempPathFactory, name: str, *audit_args: str) -> SignedRun:
    """Run a signed audit once per test session, whichever worker asks first; the other
    workers wait for it and read the same run (a session fixture is otherwise per worker,
    and two workers would each spend minutes on the same audit)."""
    from filelock import FileLock

    root = _shared_root(factory) / f"shared-{name}"
    done = root.with_suffix(".json")
    with FileLock(str(root) + ".lock"):
        if not done.is_file():
            root.mkdir(exist_ok=True)
            run = _signed_audit(root, *audit_args)
            done.write_text(json.dumps({**{k: str(v) for k, v in vars(run).items()},
                                        "audit_returncode": run.audit_returncode}))
    saved = json.loads(done.read_text())
    return SignedRun(Path(saved["run_dir"]), Path(saved["private_key"]),
                     Path(saved["public_key"]), saved["audit_stdout"],
                     int(saved["audit_returncode"]))


def _demo_run(factory: pytest.TempPathFactory) -> SignedRun:
    from certify.demo.models import ensure_built

    ensure_built("tiny-chat")
    ensure_built("tiny-chat-immunized")
    return _shared_audit(factory, "demo-run", "builtin:tiny-chat-immunized",
                         "--reference", "builtin:tiny-chat")


@pytest.fixture(scope="session")
def signed_run(tmp_path_factory: pytest.TempPathFactory, tiny_chat: Path) -> SignedRun:
    """The signed ci-smoke audit the report and attestation tests read: the README demo's
    own run (the defended model against the undefended reference). One audit serves both
    fixtures; a second, reference-less one cost the suite minutes and tested nothing the
    demo run does not (test_pipeline re-decides this run without its reference)."""
    return _demo_run(tmp_path_factory)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> SignedRun:
    """The README demo: the defended demo model against the undefended one, signed."""
    return _demo_run(tmp_path_factory)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Under pytest-xdist, the two workers build what the collected tests will need before
    their first test, side by side instead of one after the other: the first worker the
    demo model nearly every test uses, the second the calibration models and then the
    README demo audit (which waits for the first worker's model). Without this, both
    workers' first tests wait on the same build, and one core idles for minutes."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker not in ("gw0", "gw1"):
        return
    from certify.demo.models import ensure_built

    uses = {name for item in session.items for name in getattr(item, "fixturenames", ())}
    files = {Path(str(item.fspath)).name for item in session.items}
    if worker == "gw0":
        ensure_built("tiny-chat")  # cached in .cache/certify: a cost once per checkout
        return
    if any(f.startswith("test_calibration") for f in files):
        ensure_built("tiny-chat-unlearned")  # and the unfiltered model it starts from
    if "demo_run" in uses:
        _demo_run(session.config._tmp_path_factory)  # type: ignore[attr-defined]
