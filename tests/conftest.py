"""Shared test set-up: offline Hugging Face, a persistent demo-model cache, slow marker.

The demo models' shipped builds (certify/demo/prebuilt) are copied once per cache
into .cache/certify in the checkout, or CERTIFY_CACHE_DIR. Slow tests run with --runslow.
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
    _schedule(items)
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


# Seconds each test file took in a fresh-clone run on 2 cores (2026-12-07, loaded, so
# read them as relative weights); a file missing here counts as short. They decide only
# the order in which pytest-xdist hands out files (``--dist loadfile`` with
# ``--no-loadscope-reorder``), never a result.
FILE_WEIGHT = {
    "test_cost.py": 150, "test_knowledge.py": 210, "test_fault_injection.py": 180,
    "test_eval_preflight.py": 90, "test_fsdp.py": 125, "test_attacks_jailbreak.py": 125,
    "test_device.py": 125, "test_fault_training.py": 120, "test_replay.py": 105,
    "test_merge.py": 85, "test_pipeline.py": 70, "test_cell_state.py": 70,
    "test_graceful_stop.py": 65, "test_policies_shipped.py": 60, "test_uplift.py": 55,
    "test_early_stop.py": 50, "test_attestation.py": 60, "test_conditions.py": 175,
    "test_calibration.py": 170, "test_diff.py": 75, "test_calibration_models.py": 75,
    "test_bounded_worst.py": 60, "test_security.py": 40, "test_bad_models.py": 35,
    "test_report_disclosures.py": 40, "test_report_hostile.py": 35,
    "test_cli_json_errors.py": 35, "test_report_views.py": 35, "test_plugin_contract.py": 30,
    "test_fsdp_state.py": 30, "test_demo.py": 30,
}
PREBUILT = {"demo_run", "signed_run"}
"""Fixtures the first worker prepares before its first test (pytest_collection_finish)."""


def _schedule(items: list[pytest.Item]) -> None:
    """Order test files so that two workers finish together, and none waits on a build.

    Files come longest first (the classic longest-processing-time rule: the run does not
    end with one worker on a long file while the other idles), except that files reading
    the README demo audit wait until the long files that do not have been handed out,
    which gives the worker preparing it (see pytest_collection_finish) time to finish,
    and the short files come last. The order
    within a file is kept."""
    def file_of(item: pytest.Item) -> str:
        return item.nodeid.split("::")[0]

    late: dict[str, bool] = {}
    for item in items:
        name = file_of(item)
        late[name] = late.get(name, False) or bool(PREBUILT & set(
            getattr(item, "fixturenames", ())))

    def rank(name: str) -> tuple[int, float]:
        weight = FILE_WEIGHT.get(Path(name).name, 5)
        return (1 if late[name] else 0 if weight >= 50 else 2), -weight

    order = {name: i for i, name in enumerate(sorted(late, key=rank))}
    items.sort(key=lambda item: order[file_of(item)])  # stable: the file's own order kept


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
    """Under pytest-xdist, the first worker runs the README demo audit (signed; the report
    and attestation tests read it) before its first test, while the second starts on the
    long files; _schedule hands out the files that read the audit after those, so no
    worker waits on it. (The demo models are shipped builds: copying one takes a moment.)"""
    if os.environ.get("PYTEST_XDIST_WORKER") != "gw0":
        return
    uses = {name for item in session.items for name in getattr(item, "fixturenames", ())}
    if uses & PREBUILT:
        _demo_run(session.config._tmp_path_factory)  # type: ignore[attr-defined]
