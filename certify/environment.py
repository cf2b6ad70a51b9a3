"""What the audit ran on: Python, platform, hardware, package versions, certify's revision."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from certify import __version__

PACKAGES = ("torch", "transformers", "tokenizers", "peft", "accelerate", "lm_eval", "datasets",
            "safetensors", "gguf", "pydantic", "weasyprint", "jinja2", "matplotlib",
            "securesystemslib", "model-signing", "cryptography", "click", "numpy", "ray")
DRIFT_PACKAGES = ("certify", "torch", "transformers", "peft")


def package_versions() -> dict[str, str]:
    out = {"certify": __version__}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_revision() -> dict[str, Any] | None:
    """certify's own source revision, when it runs from a git checkout."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "certify"],
                               capture_output=True, text=True, timeout=5).stdout.strip() != ""
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}


def hardware() -> dict[str, Any]:
    info: dict[str, Any] = {"cpu_count": os.cpu_count(), "machine": platform.machine(),
                            "processor": platform.processor() or None}
    if "torch" in sys.modules:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            info["cuda_version"] = torch.version.cuda
            info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def capture() -> dict[str, Any]:
    return {"python": platform.python_version(), "platform": platform.platform(),
            "hostname_hash": hostname_hash(), "hardware": hardware(),
            "packages": package_versions(), "certify_revision": git_revision()}


def hostname_hash() -> str:
    """A short hash of the host name: tells workers apart without naming machines."""
    import hashlib

    return hashlib.sha256(platform.node().encode()).hexdigest()[:12]


def drift_versions() -> dict[str, str]:
    versions = package_versions()
    return {k: versions.get(k, "absent") for k in DRIFT_PACKAGES}
