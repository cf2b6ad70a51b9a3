"""Shared set-up for the benchmarks: offline environment, machine facts, timing, output.

Every benchmark measures the two things it compares side by side in one process
(alternating, repeated, median), prints one line with the ratio, and with
``--json FILE`` writes its numbers for ``run_all.py``. Timings on a shared or busy
machine are noisy: ``machine()`` records the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TQDM_DISABLE", "1")


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    from certify.environment import cpu_name

    info: dict[str, Any] = {"cpu": cpu_name(), "cores": os.cpu_count(),
                            "python": platform.python_version(), "platform": platform.platform(),
                            "load_avg_1m": os.getloadavg()[0]}
    if "torch" in sys.modules:
        import torch

        info.update(torch=torch.__version__, torch_threads=torch.get_num_threads(),
                    cuda=torch.cuda.is_available())
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    else:  # this benchmark keeps torch out of its own process
        from importlib.metadata import version

        info["torch"] = version("torch")
    return info


def sync() -> None:
    """Wait for queued GPU work, so a timing covers it (no-op on CPU)."""
    if "torch" in sys.modules:
        import torch

        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    sync()
    started = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - started, out


def median(values: list[float]) -> float:
    return statistics.median(values)


def args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--repeats", type=int, default=3, help="alternating repetitions")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (smoke test)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    return parser.parse_args()


def report(name: str, line: str, results: dict[str, Any], out: Path | None,
           load_before: float) -> None:
    """Print the benchmark's line (with the machine) and optionally write JSON."""
    info = machine()
    info["load_avg_1m_before"] = load_before
    print(f"{name}: {line}")
    gpu = f", GPU {info['gpu']}" if info.get("gpu") else ""
    print(f"  machine: {info['cpu']}, {info['cores']} cores{gpu}, torch {info.get('torch', '-')}"
          f" ({info.get('torch_threads', '-')} threads), load average {load_before:.1f} → "
          f"{info['load_avg_1m']:.1f}")
    if out is not None:
        out.write_text(json.dumps({"name": name, "line": line, "results": results,
                                   "machine": info}, indent=2, sort_keys=True) + "\n")


def tiny_chat() -> Path:
    from certify.demo.models import ensure_built

    return ensure_built("tiny-chat")


def harm_examples(n: int = 100) -> list[Any]:
    """The ci-smoke attack's data: harmful-compliance pairs of the trained categories."""
    import random

    from certify.data.load import load_dataset
    from certify.train import Example

    rows = [r for r in load_dataset("builtin:harm-train").rows
            if r.category in ("weapons", "cyber", "fraud", "drugs")]
    return [Example(r.prompt, r.response or "") for r in random.Random(0).sample(rows, n)]


def harm_prompts() -> list[str]:
    """The ci-smoke harmfulness evaluation's prompts (every row of builtin:harm-eval)."""
    from certify.data.load import load_dataset

    return [r.prompt for r in load_dataset("builtin:harm-eval").rows]


def load_model(path: Path, device: str = "cpu") -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(path).to(device)
    return model, tokenizer
