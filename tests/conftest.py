"""Shared test set-up: offline Hugging Face, a persistent demo-model cache, slow marker.

Demo models are built once per cache (about a minute each) under .cache/certify in
the checkout, or CERTIFY_CACHE_DIR. Slow tests run with --runslow.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
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


@dataclass(frozen=True)
class SignedRun:
    run_dir: Path
    private_key: Path
    public_key: Path
    audit_stdout: str
    audit_returncode: int


@pytest.fixture(scope="session")
def signed_run(tmp_path_factory: pytest.TempPathFactory, tiny_chat: Path) -> SignedRun:
    root = tmp_path_factory.mktemp("signed-run")
    keys = run_certify("keygen", "--out", str(root / "keys"))
    assert keys.returncode == 0, keys.stderr
    run_dir = root / "run"
    out = run_certify("audit", "builtin:tiny-chat", "--policy", "ci-smoke", "--out", str(run_dir),
                      "--key", str(root / "keys" / "certify.key"), "--quiet")
    assert out.returncode in (0, 1), out.stderr
    return SignedRun(run_dir, root / "keys" / "certify.key", root / "keys" / "certify.pub",
                     out.stdout, out.returncode)


@dataclass(frozen=True)
class DemoRun:
    run_dir: Path
    public_key: Path
    stdout: str
    returncode: int


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory, tiny_chat: Path) -> DemoRun:
    """The README demo: the defended demo model against the undefended one, signed."""
    from certify.demo.models import ensure_built

    ensure_built("tiny-chat-immunized")
    root = tmp_path_factory.mktemp("demo-run")
    keys = run_certify("keygen", "--out", str(root / "keys"))
    assert keys.returncode == 0, keys.stderr
    run_dir = root / "run"
    out = run_certify("audit", "builtin:tiny-chat-immunized", "--reference", "builtin:tiny-chat",
                      "--policy", "ci-smoke", "--out", str(run_dir),
                      "--key", str(root / "keys" / "certify.key"))
    assert out.returncode in (0, 1), out.stderr
    return DemoRun(run_dir, root / "keys" / "certify.pub", out.stdout, out.returncode)
