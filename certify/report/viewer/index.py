"""Every sample of a run, indexed once so the viewer filters without re-reading the files.

The index keeps, per sample, only what the filters need (evaluation, step, category,
outcome, whether the judges disagreed) and where its line starts in its samples file; a
page reads just the lines it shows. Only files whose digest matches the evidence are
indexed (``samples.usable_files``): the viewer shows what the evidence vouches for.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from certify.evidence import CellRecord, Evidence
from certify.report.samples import measures_of, outcome, rows, usable_files
from certify.report.text import one_line

FACETS = ("eval", "label", "category", "role", "cell", "step")
"""The filters a samples page accepts besides ``disagree``, in the order the form shows."""


@dataclass(frozen=True)
class Entry:
    number: int
    cell: CellRecord
    offset: int
    eval: str
    step: str
    category: str
    label: str
    disagree: bool

    def facet(self, name: str) -> str:
        if name == "role":
            return self.cell.role
        if name == "cell":
            return self.cell.id
        return str(getattr(self, name))


def disagreement(row: dict[str, Any]) -> bool:
    """Whether the judges that scored the row gave it different labels."""
    judges = row.get("judges")
    votes = {str(v) for v in judges.values()} if isinstance(judges, dict) else set()
    return len(votes) > 1


def _entry(number: int, cell: CellRecord, offset: int, row: dict[str, Any]) -> Entry:
    step = row.get("step")
    return Entry(number=number, cell=cell, offset=offset, eval=one_line(row.get("eval"), 60),
                 step=str(step) if isinstance(step, int) else "?",
                 category=one_line(row.get("category") or row.get("task") or "—", 60),
                 label=outcome(row, measures_of(cell, row.get("eval")), expected=False),
                 disagree=disagreement(row))


class SampleIndex:
    """The run's samples: filter them, count them per facet, read one back."""

    def __init__(self, run_dir: Path, evidence: Evidence) -> None:
        files, self.warnings = usable_files(run_dir, evidence)
        self.paths = {cell.id: path for cell, path in files}
        self.entries: list[Entry] = []
        for cell, path in files:
            for offset, row in rows(path):
                self.entries.append(_entry(len(self.entries), cell, offset, row))

    def select(self, filters: dict[str, str], disagree: bool,
               skip: str | None = None) -> list[Entry]:
        """Entries matching every filter (but ``skip``, the facet being counted)."""
        wanted = {k: v for k, v in filters.items() if v and k != skip}
        return [e for e in self.entries
                if (not disagree or e.disagree)
                and all(e.facet(k) == v for k, v in wanted.items())]

    def counts(self, filters: dict[str, str], disagree: bool) -> dict[str, list[tuple[str, int]]]:
        """Per facet, each value and how many samples the other filters leave with it."""
        out = {}
        for name in FACETS:
            tally = Counter(e.facet(name) for e in self.select(filters, disagree, skip=name))
            out[name] = sorted(tally.items(), key=lambda kv: _order(name, kv[0]))
        return out

    def row(self, entry: Entry) -> dict[str, Any]:
        """The sample's full record, read back from its (digest-checked) file."""
        with self.paths[entry.cell.id].open("rb") as f:
            f.seek(entry.offset)
            row: dict[str, Any] = json.loads(f.readline())
        return row

    def rows(self, entries: Iterable[Entry]) -> list[tuple[Entry, dict[str, Any]]]:
        return [(e, self.row(e)) for e in entries]


def _order(facet: str, value: str) -> tuple[int, str]:
    return (int(value), "") if facet == "step" and value.isdigit() else (1 << 30, value)
