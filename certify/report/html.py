"""Jinja2 → HTML for the report (autoescape, StrictUndefined), for the PDF and report.html."""

from __future__ import annotations

import base64
from typing import Any

from certify import __version__
from certify.report.assets import asset_url, templates_dir
from certify.report.methodology import CELL_COLUMNS
from certify.report.view import ReportView


def environment(autoescape: bool = True, finalize: Any = None) -> Any:
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates_dir())),
                              autoescape=autoescape, undefined=jinja2.StrictUndefined,
                              finalize=finalize, keep_trailing_newline=True)


def figures(view: ReportView, *, for_pdf: bool,
            ) -> tuple[list[str], dict[str, str], dict[str, bytes]]:
    """Image sources of the curves, of the charts beside checks (by chart name), and the
    generated files the PDF's fetcher serves.

    Each SVG stays a separate image (not inline markup) so the ids inside one figure
    cannot collide with another's; report.html carries them as data: URLs.
    """
    generated: dict[str, bytes] = {}

    def source(name: str, svg: str) -> str:
        data = svg.encode("utf-8")
        if for_pdf:
            generated[f"figures/{name}.svg"] = data
            return asset_url(f"figures/{name}.svg")
        return "data:image/svg+xml;base64," + base64.b64encode(data).decode("ascii")

    sources = [source(f"curve-{i}", curve.svg) for i, curve in enumerate(view.curves)]
    charts = {chart.name: source(chart.name, chart.svg) for section in view.conditions
              for shown in section.charts.values() for chart in shown}
    return sources, charts, generated


def render_html(view: ReportView, *, for_pdf: bool) -> tuple[str, dict[str, bytes]]:
    """The report as HTML, and the generated figures it references. The PDF variant also
    declares the bundled fonts."""
    from markupsafe import Markup

    root = templates_dir()
    css = (root / "report.css").read_text(encoding="utf-8")
    if for_pdf:
        css = (root / "fonts.css").read_text(encoding="utf-8") + css
    sources, chart_sources, generated = figures(view, for_pdf=for_pdf)
    template = environment().get_template("report.html.j2")
    # The stylesheet is a packaged file, never data; it must not be entity-escaped.
    html = template.render(view=view, stylesheet=Markup(css), version=__version__,
                           cell_columns=CELL_COLUMNS, figure_sources=sources,
                           chart_sources=chart_sources)
    return html, generated
