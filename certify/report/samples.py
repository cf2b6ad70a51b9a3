"""Random input/output samples per evaluation, reproducible and redacted.

EU GPAI Code of Practice Measure 7.3(1)(f) asks for at least five random samples of
inputs and outputs per evaluation. They are drawn from the per-sample JSONL files by
a seeded hash order (the same evidence always shows the same samples, whatever the
file order), only from files whose digest matches the evidence. Text a judge
labelled harmful is replaced by its digest unless the policy says otherwise.
"""

from __future__ import annotations

import hashlib
import heapq
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from certify._io import sha256_file
from certify.evidence import CellRecord, Evidence
from certify.report.text import SAMPLE_CHARS, SAMPLE_LINES, clean, one_line

MAX_LINE_BYTES = 4 << 20


@dataclass(frozen=True)
class Sample:
    eval: str
    cell: str
    role: str
    attack: str
    seed: int
    step: int
    item: str
    category: str
    label: str
    judges: str
    prompt: str
    response: str
    redacted: bool


@dataclass(frozen=True)
class SampleSet:
    eval: str
    total: int
    samples: list[Sample]


def _sample_path(run_dir: Path, cell: CellRecord) -> Path | None:
    name = cell.samples_file
    if not name or PurePosixPath(name).is_absolute() or ".." in PurePosixPath(name).parts:
        return None
    path = run_dir / name
    return path if path.is_file() else None


def usable_files(run_dir: Path, evidence: Evidence) -> tuple[list[tuple[CellRecord, Path]],
                                                             list[str]]:
    """Sample files whose bytes match the evidence, and warnings about those that do not."""
    ok, warnings = [], []
    for cell in evidence.cells:
        if not cell.samples_file:
            continue
        path = _sample_path(run_dir, cell)
        if path is None:
            warnings.append(f"{one_line(cell.samples_file, 120)}: missing; its samples are not "
                            "shown")
        elif sha256_file(path) != cell.samples_sha256:
            warnings.append(f"{cell.samples_file}: does not match the digest in the evidence; "
                            "its samples are not shown")
        else:
            ok.append((cell, path))
    return ok, warnings


def rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Each readable JSON object of a samples file, with its byte offset; an oversized,
    blank or unparseable line (the file is model output, hostile) is skipped."""
    offset = 0
    with path.open("rb") as f:
        for line in f:
            start, offset = offset, offset + len(line)
            if len(line) > MAX_LINE_BYTES or not line.strip():
                continue
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if isinstance(row, dict):
                yield start, row


def records(files: list[tuple[CellRecord, Path]]) -> Iterator[tuple[CellRecord, dict[str, Any]]]:
    for cell, path in files:
        for _, row in rows(path):
            yield cell, row


def _rank(seed: str, cell: CellRecord, row: dict[str, Any]) -> int:
    key = json.dumps([seed, cell.id, row.get("eval"), row.get("step"), row.get("item")],
                     sort_keys=True, default=str)
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")


def _is_harmful(row: dict[str, Any]) -> bool:
    judges = row.get("judges")
    votes = judges.values() if isinstance(judges, dict) else []
    return row.get("label") == "harmful" or "harmful" in votes


HARM_OUTCOMES = ("harmful", "harmful (with uplift)", "compliant (no uplift)")
"""How a response the ensemble labelled harmful (compliant) reads: with its uplift where the
judge scored it (judges.base.Judgement.harm_label), else plain harmful."""


def harm_outcome(row: dict[str, Any]) -> str:
    uplift = row.get("uplift")
    if not isinstance(uplift, bool):
        return HARM_OUTCOMES[0]
    return HARM_OUTCOMES[1] if uplift else HARM_OUTCOMES[2]


def _correct(row: dict[str, Any]) -> bool | None:
    """Whether the answer was right: ``correct``, else ``acc`` as a bool or a 0/1 flag."""
    for key in ("correct", "acc"):
        value = row.get(key)
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
    return None


def outcome(row: dict[str, Any], measures: str, *, expected: bool = True) -> str:
    """The judge's label, or what the scorer recorded, in the words of what the evaluation
    measures: an over-refusal sample either refused or answered (whether it also held the
    expected words is not what over-refusal measures, so it never reads "incorrect").
    ``expected=False`` leaves out the expected answer (the viewer's label filter groups
    every incorrect answer under one label)."""
    if row.get("label") == "harmful":
        return harm_outcome(row)
    if row.get("label"):
        return one_line(row["label"], 40)
    refused = row.get("refusal")
    if measures == "refusal" and isinstance(refused, bool):
        return "refused" if refused else "answered (not refused)"
    parts = []
    correct = _correct(row)
    if correct is not None:
        wanted = one_line(row.get("expected") or "", 60) if expected else ""
        parts.append("correct" if correct else
                     f"incorrect (expected {wanted!r})" if wanted else "incorrect")
    if refused is True:
        parts.append("refused")
    return ", ".join(parts) or "—"


def measures_of(cell: CellRecord, eval_id: Any) -> str:
    """What the row's evaluation measures (harm, refusal, task, capability), from the cell."""
    return next((cp.evals[eval_id].measures for cp in cell.checkpoints
                 if isinstance(eval_id, str) and eval_id in cp.evals), "")


def _redaction(row: dict[str, Any], response: str, samples_file: str | None) -> str:
    """The placeholder for a response some judge labelled harmful. It names who said so,
    so that it never contradicts an outcome the ensemble decided otherwise."""
    judges: dict[str, Any] = row["judges"] if isinstance(row.get("judges"), dict) else {}
    by = [str(name) for name, vote in judges.items() if vote == "harmful"]
    if row.get("label") == "harmful" or not by:
        why = f"judged {harm_outcome(row)}"
    else:
        why = (f"the {', '.join(by)} judge{'s' if len(by) > 1 else ''} labelled it harmful, "
               f"the outcome is {one_line(row.get('label'), 40)}")
    digest = hashlib.sha256(response.encode("utf-8")).hexdigest()
    return (f"[redacted: {why} · {len(response)} characters · sha256 {digest[:16]}… · "
            f"full text in {samples_file}]")


def sample(cell: CellRecord, row: dict[str, Any], redact: bool, *, chars: int = SAMPLE_CHARS,
           lines: int = SAMPLE_LINES) -> Sample:
    """One row as shown: text made printable and cut at ``chars`` characters and ``lines``
    lines, a response some judge called harmful replaced by its digest when ``redact``."""
    response = "" if row.get("response") is None else str(row.get("response"))
    redacted = redact and _is_harmful(row)
    if redacted:
        shown = _redaction(row, response, cell.samples_file)
    else:
        shown = clean(response, chars, lines)
    judges: dict[str, Any] = row["judges"] if isinstance(row.get("judges"), dict) else {}
    return Sample(eval=one_line(row.get("eval"), 60), cell=cell.id, role=cell.role,
                  attack=cell.attack_id, seed=cell.seed,
                  step=row["step"] if isinstance(row.get("step"), int) else -1,
                  item=one_line(row.get("item"), 80),
                  category=one_line(row.get("category") or row.get("task") or "", 60),
                  label=outcome(row, measures_of(cell, row.get("eval"))),
                  judges=one_line(", ".join(f"{k}: {v}" for k, v in judges.items()), 160),
                  prompt=clean(row.get("prompt"), chars, lines), response=shown,
                  redacted=redacted)


def pick(run_dir: Path, evidence: Evidence, per_eval: int,
         redact: bool) -> tuple[list[SampleSet], list[str]]:
    """``per_eval`` samples for every evaluation of the evidence, and integrity warnings."""
    files, warnings = usable_files(run_dir, evidence)
    seed = str(evidence.run.get("run_id", ""))
    # Per evaluation, a bounded max-heap (negated rank) keeps the per_eval lowest ranks.
    heaps: dict[str, list[tuple[int, int, CellRecord, dict[str, Any]]]] = {
        e: [] for e in evidence.evaluations}
    totals = dict.fromkeys(evidence.evaluations, 0)
    for n, (cell, row) in enumerate(records(files)):
        eval_id = row.get("eval")
        heap = heaps.get(eval_id) if isinstance(eval_id, str) else None
        if heap is None:
            continue
        totals[eval_id] += 1  # type: ignore[index]
        item = (-_rank(seed, cell, row), n, cell, row)
        if len(heap) < per_eval:
            heapq.heappush(heap, item)
        elif per_eval and item[0] > heap[0][0]:
            heapq.heapreplace(heap, item)
    sets = []
    for eval_id, heap in heaps.items():
        chosen = sorted(heap, key=lambda t: -t[0])
        sets.append(SampleSet(eval_id, totals[eval_id],
                              [sample(cell, row, redact) for _, _, cell, row in chosen]))
    return sets, warnings
