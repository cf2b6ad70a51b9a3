"""Ray is optional: without it, `--executor ray` is a usage error naming the extra to install."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests._scale import SCALE_POLICY
from tests.conftest import ROOT


def test_missing_ray_is_a_usage_error_naming_the_extra(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['ray'] = None; from certify.cli import main; "
            f"main(['audit', 'builtin:tiny-chat', '--policy', {SCALE_POLICY!r}, '--out', "
            f"{str(tmp_path / 'run')!r}, '--executor', 'ray'])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT)
    assert proc.returncode == 2, proc.stderr
    assert 'pip install "certify[ray]"' in proc.stderr
    assert not (tmp_path / "run").exists()
