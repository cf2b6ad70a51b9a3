"""The size of lm-eval tasks a dry run can see: those shipped as files by a task provider.

A capability evaluation through lm-eval scores multiple choice by log-likelihood: one
forward pass over (context + choice) per choice and document, no generation. Assuming
500 documents of 64-token prompts for every task made the demo's capability evaluation
(50 documents, 4 short choices each) look about ten times its real size; for a
provider's task the dry run now reads its template and its JSONL data and counts
documents, choices and text. Tasks on the Hugging Face hub stay assumed. Torch-free.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from certify import registry

DATA_FILE = re.compile(r"\{data_dir\}/([\w.-]+\.jsonl)")


@dataclass(frozen=True)
class TaskSize:
    documents: int
    requests: int
    """Forward passes: one per choice of a multiple-choice document, else one."""
    characters: float
    """Mean characters of one request (context and continuation)."""


def _template(task: str) -> Path | None:
    for _, provider in sorted(registry.providers("lm_eval_tasks").items()):
        path = Path(provider.task_dir()) / f"{task}.yaml.in"
        if path.is_file():
            return path
    return None


def _rows(path: Path, text: str) -> list[dict[str, Any]]:
    found = DATA_FILE.search(text)
    if not found:
        return []
    lines = (path.parent / found.group(1)).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def task_size(task: str, depth: int = 0) -> TaskSize | None:
    """Documents, requests and request length of a provider's task or group; None if unseen."""
    import yaml

    path = _template(task)
    if path is None or depth > 4:
        return None
    try:
        text = path.read_text(encoding="utf-8")
        spec = yaml.safe_load(text)
        if isinstance(spec.get("task"), list):  # a group: the sum of its tasks
            parts = [task_size(str(t), depth + 1) for t in spec["task"]]
            if not parts or any(p is None for p in parts):
                return None
            sizes = [p for p in parts if p is not None]
            requests = sum(p.requests for p in sizes)
            chars = sum(p.characters * p.requests for p in sizes) / max(requests, 1)
            return TaskSize(sum(p.documents for p in sizes), requests, chars)
        rows = _rows(path, text)
    except (OSError, ValueError, AttributeError, yaml.YAMLError):
        return None  # an unreadable task only costs accuracy: it stays assumed
    if not rows:
        return None
    choices = [len(r["choices"]) if isinstance(r.get("choices"), list) else 1 for r in rows]
    lengths = [len(json.dumps(r, ensure_ascii=False)) for r in rows]
    return TaskSize(len(rows), sum(choices), sum(lengths) / len(rows))
