"""Views of a run's evidence: report.pdf (PDF/A-3b, evidence attached), report.html,
junit.xml and summary.md. Rebuilt from ``evidence.json`` without running any model.

``render`` is the pipeline's render stage: it takes the evidence (and its bytes, which
the PDF embeds), the typed effective policy, and the signer's identity (None when the
run is not signed), and writes the requested views atomically.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from certify._io import atomic_write_bytes, parse_time
from certify.errors import InputError, UsageError
from certify.evidence import Evidence
from certify.policy.schema import Policy

FORMATS = {"pdf": "report.pdf", "html": "report.html", "junit": "junit.xml", "md": "summary.md"}

__all__ = ["FORMATS", "load_evidence", "parse_formats", "render", "render_one"]


def parse_formats(formats: Iterable[str]) -> list[str]:
    chosen = [f.strip().lower() for f in formats if f.strip()]
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown:
        raise UsageError(f"unknown report format(s): {', '.join(unknown)}",
                         hint=f"choose from {', '.join(FORMATS)}")
    return list(dict.fromkeys(chosen))


def _created(evidence: Evidence) -> datetime:
    stamp = evidence.run.get("collected") or evidence.run.get("created")
    try:
        return parse_time(stamp)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return datetime(1970, 1, 1, tzinfo=UTC)


def load_evidence(run_dir: Path, data: bytes | None = None) -> tuple[Evidence, bytes]:
    """``run_dir``'s evidence record and its exact bytes; ``data``: those bytes, already
    read (by a verification, which should not be followed by a second read)."""
    from pydantic import ValidationError

    path = Path(run_dir) / "evidence.json"
    if data is None and not path.is_file():
        raise InputError(f"{run_dir} has no evidence.json",
                         hint="render the run directory a finished `certify audit` wrote")
    data = path.read_bytes() if data is None else data
    try:
        return Evidence.model_validate_json(data), data
    except ValidationError as e:
        raise InputError(f"{path} is not valid certify evidence ({e.error_count()} problems, "
                         f"first: {e.errors()[0]['msg']})") from None


def render(run_dir: Path, evidence: Evidence, evidence_bytes: bytes, policy: Policy,
           formats: Iterable[str], *, signer: str | None,
           progress: Any = None) -> dict[str, Path]:
    """Write the requested views of ``evidence`` into ``run_dir``; return {format: path}.

    ``signer`` is the signing key as ``certify.attest.keys.describe`` names it (the
    cover shows it), or None for a run rendered before (or without) signing.
    """
    from certify.report import view as view_mod

    run_dir = Path(run_dir)
    chosen = parse_formats(formats)
    if not chosen:
        return {}
    view = view_mod.build(run_dir, evidence, evidence_bytes, policy, signer,
                          with_figures=bool({"pdf", "html"} & set(chosen)))
    out = {}
    for fmt in chosen:
        if progress is not None:
            progress.message(f"writing {FORMATS[fmt]}")
        data = render_one(fmt, view, evidence, evidence_bytes)
        atomic_write_bytes(run_dir / FORMATS[fmt], data)
        out[fmt] = run_dir / FORMATS[fmt]
    return out


def render_one(fmt: str, view: Any, evidence: Any, evidence_bytes: bytes,
               fetcher: Any = None) -> bytes:
    """The bytes of one view (``fetcher`` lets tests watch what the PDF renderer fetches)."""
    if fmt == "pdf":
        from certify.report.html import render_html
        from certify.report.pdf import write_pdf

        html, generated = render_html(view, for_pdf=True)
        return write_pdf(html, generated, evidence_bytes, _created(evidence), fetcher)
    if fmt == "html":
        from certify.report.html import render_html

        return render_html(view, for_pdf=False)[0].encode("utf-8")
    if fmt == "junit":
        from certify.report.junit import render_junit

        return render_junit(evidence)
    from certify.report.markdown import render_markdown

    return render_markdown(view)
