"""The viewer's pages: a path and its query in, a status and HTML out (no HTTP here).

Every string from the run (model output, prompts, judge reasons, even cell ids and
policy text in the evidence) is untrusted: it reaches the page only through Jinja2's
autoescape, after ``report.text`` made control characters visible; links are built
here from percent-encoded values, never from a string the run supplies whole. The
pages carry no script, and the stylesheet is inline, so the server's
Content-Security-Policy can forbid every script and every fetch.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from certify import __version__
from certify.evidence import CellRecord, Evidence
from certify.report.assets import templates_dir
from certify.report.executive import verdict_sentence
from certify.report.samples import Sample, sample
from certify.report.text import clean, num, one_line, pct
from certify.report.viewer.index import FACETS, SampleIndex

PAGE_SIZE = 50
FULL_CHARS = 20_000
FULL_LINES = 400
REASON_KEPT = 80
"""A redacted sample's judge reason is shown only up to this length (a rule's label such
as "refusal phrase"); a longer one could quote the response."""
FACET_TITLES = {"eval": "evaluation", "label": "label", "category": "category",
                "role": "model", "cell": "cell", "step": "step"}


@dataclass(frozen=True)
class Page:
    status: int
    html: str


def stylesheet() -> str:
    return (templates_dir() / "viewer" / "viewer.css").read_text(encoding="utf-8")


def style_hash(css: str) -> str:
    """The CSP source that allows exactly this inline stylesheet and no other style."""
    digest = hashlib.sha256(css.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def _environment() -> Any:
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates_dir() / "viewer")),
                              autoescape=True, undefined=jinja2.StrictUndefined)


def samples_url(**params: Any) -> str:
    kept = {k: v for k, v in params.items() if v not in (None, "", False)}
    return "/samples" + (("?" + urlencode(kept)) if kept else "")


def cell_url(cell_id: str) -> str:
    return "/cell/" + quote(cell_id, safe="")


def _metric_text(record: Any) -> str:
    """An evaluation's headline numbers at one checkpoint: each rate with k/n."""
    parts = []
    for name, m in list(record.metrics.items())[:3]:
        counted = m.k is not None
        shown = pct(m.value) if counted else num(m.value)
        parts.append(f"{one_line(name, 40)} {shown}" + (f" ({m.k}/{m.n})" if counted else ""))
    return "; ".join(parts) or "—"


class Viewer:
    """One run's pages. Built once (the samples are indexed then); read-only after."""

    def __init__(self, run_dir: Path, evidence: Evidence, *, redact: bool) -> None:
        self.run_dir = Path(run_dir)
        self.evidence = evidence
        self.redact = redact
        self.index = SampleIndex(self.run_dir, evidence)
        self.cells = {c.id: c for c in evidence.cells}
        self.css = stylesheet()
        self.env = _environment()

    def render(self, path: str, query: dict[str, str]) -> Page:
        parts = [p for p in path.split("/") if p]
        if not parts:
            return self._page(200, "overview.html.j2", **self._overview())
        if parts == ["samples"]:
            return self._page(200, "samples.html.j2", **self._samples(query))
        if len(parts) == 2 and parts[0] == "cell" and parts[1] in self.cells:
            return self._page(200, "cell.html.j2", **self._cell(self.cells[parts[1]]))
        if len(parts) == 2 and parts[0] == "sample" and parts[1].isdigit():
            number = int(parts[1])
            if number < len(self.index.entries):
                return self._page(200, "sample.html.j2", **self._sample(number))
        return self._page(404, "missing.html.j2", title="Not found", path=clean(path, 200))

    def _page(self, status: int, template: str, **context: Any) -> Page:
        from markupsafe import Markup

        run = self.evidence.run
        html = self.env.get_template(template).render(
            stylesheet=Markup(self.css), version=__version__, run_id=one_line(run.get("run_id")),
            policy=one_line(self.evidence.policy.get("id")), samples_url=samples_url,
            cell_url=cell_url, **context)
        return Page(status, html)

    def _overview(self) -> dict[str, Any]:
        ev = self.evidence
        verdict = ev.verdict
        per_cell = Counter(e.cell.id for e in self.index.entries)
        models = {role: one_line((ident or {}).get("spec")) for role, ident in ev.models.items()
                  if ident}
        cells = [{"id": c.id, "url": cell_url(c.id), "role": c.role,
                  "attack": one_line(c.attack_id), "seed": c.seed, "status": c.status,
                  "steps": ", ".join(str(cp.step) for cp in c.checkpoints) or "—",
                  "early_stop": c.early_stop.step if c.early_stop else "",
                  "samples": per_cell[c.id],
                  "samples_url": samples_url(cell=c.id)} for c in ev.cells]
        checks = [{"id": one_line(c.id), "verdict": c.verdict, "required": c.required,
                   "reason": clean(c.reason, 600, 6)} for c in (verdict.checks if verdict else [])]
        return {"title": "Run overview", "models": models, "cells": cells, "checks": checks,
                "overall": verdict.overall if verdict else "not assessed",
                "summary": clean(verdict_sentence(ev), 600, 4),
                "scope": clean(ev.scope, 1200, 8), "run_status": one_line(ev.run.get("status")),
                "created": one_line(ev.run.get("created")), "redact": self.redact,
                "warnings": self.index.warnings, "n_samples": len(self.index.entries),
                "disagreements": sum(e.disagree for e in self.index.entries)}

    def _cell(self, cell: CellRecord) -> dict[str, Any]:
        evals = sorted({e for cp in cell.checkpoints for e in cp.evals})
        rows = [{"step": cp.step, "loss": num(cp.loss), "seconds": num(cp.seconds),
                 "samples": cp.samples, "tokens": cp.tokens,
                 "evals": [(_metric_text(cp.evals[e]) if e in cp.evals else "",
                            samples_url(cell=cell.id, eval=e, step=cp.step)) for e in evals]}
                for cp in cell.checkpoints]
        error = (f"{cell.error.kind}: {cell.error.message}" + (f" ({cell.error.hint})"
                 if cell.error.hint else "")) if cell.error else ""
        return {"title": f"Cell {one_line(cell.id)}", "cell": cell, "evals": evals, "rows": rows,
                "params": clean(json.dumps(cell.params, indent=2, sort_keys=True, default=str),
                                8000, 200),
                "error": clean(error, 2000, 20),
                "early_stop": clean(f"step {cell.early_stop.step}: {cell.early_stop.reason}")
                if cell.early_stop else "", "samples_url_all": samples_url(cell=cell.id)}

    def _samples(self, query: dict[str, str]) -> dict[str, Any]:
        filters = {k: query.get(k, "")[:200] for k in FACETS}
        disagree = query.get("disagree", "") not in ("", "0")
        page = int(query["page"]) if query.get("page", "").isdigit() else 1
        chosen = self.index.select(filters, disagree)
        pages = max(1, -(-len(chosen) // PAGE_SIZE))
        page = min(max(page, 1), pages)
        shown = chosen[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
        counts = self.index.counts(filters, disagree)
        facets = []
        for name in FACETS:
            options = [(value, n) for value, n in counts[name]]
            if filters[name] and filters[name] not in dict(options):
                options.append((filters[name], 0))
            facets.append({"name": name, "title": FACET_TITLES[name], "selected": filters[name],
                           "options": [(one_line(v, 80), v, n) for v, n in options]})
        samples = [(entry, self._shown(entry, row, full=False))
                   for entry, row in self.index.rows(shown)]
        nav = {**filters, "disagree": "1" if disagree else ""}
        return {"title": "Samples", "facets": facets, "disagree": disagree, "total": len(chosen),
                "all": len(self.index.entries), "samples": samples, "page": page, "pages": pages,
                "prev_url": samples_url(**nav, page=page - 1) if page > 1 else "",
                "next_url": samples_url(**nav, page=page + 1) if page < pages else "",
                "clear_url": samples_url()}

    def _sample(self, number: int) -> dict[str, Any]:
        entry = self.index.entries[number]
        row = self.index.row(entry)
        judges: dict[str, Any] = row["judges"] if isinstance(row.get("judges"), dict) else {}
        shown = self._shown(entry, row, full=True)
        reason = clean(row.get("reason") or "", 2000, 20)
        if shown.redacted and len(reason) > REASON_KEPT:
            # A model judge's reason may quote the response it judged: withheld with it.
            reason = f"[withheld with the response: {len(reason)} characters]"
        return {"title": f"Sample {number}", "entry": entry, "sample": shown,
                "judges": [(one_line(k, 60), one_line(v, 60)) for k, v in judges.items()],
                "reason": reason,
                "uplift": row.get("uplift") if isinstance(row.get("uplift"), bool) else None,
                "expected": clean(row.get("expected") or "", 2000, 20),
                "file": one_line(entry.cell.samples_file), "cell_link": cell_url(entry.cell.id)}

    def _shown(self, entry: Any, row: dict[str, Any], *, full: bool) -> Sample:
        if full:
            return sample(entry.cell, row, self.redact, chars=FULL_CHARS, lines=FULL_LINES)
        return sample(entry.cell, row, self.redact)
