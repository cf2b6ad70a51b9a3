"""What the audit ran on: Python, platform, hardware, package versions, certify's revision,
and what influences a cell's float arithmetic (:func:`numerics`)."""

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


NUMERICS_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "ATEN_CPU_CAPABILITY", "DNNL_MAX_CPU_ISA",
                "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS", "CUBLAS_WORKSPACE_CONFIG",
                "NVIDIA_TF32_OVERRIDE")
"""Environment variables that change which kernels run, or how many threads split a sum."""
CPU_FLAGS = ("avx", "avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16",
             "fma", "f16c", "asimd", "sve")
"""The CPU features that select vectorised kernels (x86 and Arm)."""


def cpu_name() -> str:
    """The CPU model ("model name" in /proc/cpuinfo on Linux), else the platform's word."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """Which of :data:`CPU_FLAGS` this CPU has (empty where /proc/cpuinfo is absent)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    have = set(line.split(":", 1)[1].split())
                    return [flag for flag in CPU_FLAGS if flag in have]
    except OSError:
        pass
    return []


def _blas(torch: Any) -> str:
    """The BLAS library torch was built with, as its build configuration names it."""
    config = torch.__config__.show()
    for line in config.splitlines():
        line = line.strip()
        if line.startswith(("- BLAS_INFO=", "BLAS_INFO=")):
            return str(line.split("=", 1)[1])
    if torch.backends.mkl.is_available():
        return "mkl"
    return "unknown"


def numerics(device: str, dtype: str, autocast: str | None) -> dict[str, Any]:
    """What decides a cell's float arithmetic on this worker: two workers that agree on all
    of it compute the same numbers from the same seeds; where any of it differs, judged
    counts and break points may move (docs/reliability.md measures how far). Needs torch."""
    import torch

    out: dict[str, Any] = {
        "torch": torch.__version__, "device": device, "dtype": dtype, "autocast": autocast,
        "threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "cpu": cpu_name(), "cpu_flags": cpu_flags(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "blas": _blas(torch), "mkldnn": bool(torch.backends.mkldnn.is_available()),  # type: ignore[no-untyped-call]
        "env": {k: os.environ[k] for k in NUMERICS_ENV if k in os.environ},
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(0)
        out["cuda"] = torch.version.cuda
        out["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
        out["cudnn_deterministic"] = torch.backends.cudnn.deterministic
    return out


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
