"""`certify view RUN_DIR`: a local, read-only browser of one run's cells, checkpoints and
every sample, filtered by label, judge disagreement, category, evaluation, model, cell
and step — the way `inspect view` and `promptfoo view` show an evaluation.

It reads the run directory and nothing else: no external fetch (the stylesheet is
inline, the pages carry no script), the report's redaction rules (a response a judge
called harmful shows as its digest unless the policy says otherwise), and a server
bound to 127.0.0.1. ``index.py`` indexes the samples, ``pages.py`` renders, and
``server.py`` serves.
"""

from __future__ import annotations

from pathlib import Path

from certify.evidence import Evidence
from certify.report.viewer.pages import Page, Viewer
from certify.report.viewer.server import HOST, ViewerServer

__all__ = ["HOST", "Page", "Viewer", "ViewerServer", "open_server"]


def open_server(run_dir: Path, evidence: Evidence, *, redact: bool, port: int) -> ViewerServer:
    """A server of ``run_dir``'s pages listening on 127.0.0.1:``port`` (0: any free port),
    not yet serving: call ``serve_forever()``."""
    return ViewerServer(Viewer(run_dir, evidence, redact=redact), port)
