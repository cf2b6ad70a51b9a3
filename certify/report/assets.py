"""Packaged report assets (templates, CSS, fonts) and the only URL fetcher the PDF uses.

The report renders hostile text (model outputs), so the renderer may fetch nothing
but certify's own packaged files: every other URL — file://, http(s)://, data: —
is refused and recorded, and tests assert the record stays empty.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SCHEME = "certify-asset:"
FONT_SUFFIXES = (".ttf", ".otf")


def templates_dir() -> Path:
    """Shipped templates: certify/_shipped/templates in a wheel, templates/ in a checkout."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "_shipped" / "templates", here.parent / "templates"):
        if candidate.is_dir():
            return candidate
    return here.parent / "templates"


def asset_url(relative: str) -> str:
    return f"{SCHEME}{relative}"


def _fetcher_base() -> type:
    from weasyprint.urls import URLFetcher

    return URLFetcher


CONTENT_TYPES = {".ttf": "font/ttf", ".otf": "font/otf", ".svg": "image/svg+xml"}


def make_fetcher(generated: dict[str, bytes] | None = None) -> Any:
    """A WeasyPrint URL fetcher serving only packaged fonts and the figures certify just
    generated (``generated``: name → bytes). ``.requested`` and ``.refused`` log every
    URL the renderer asked for."""
    from weasyprint.urls import URLFetcherResponse

    class AssetFetcher(_fetcher_base()):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(allowed_protocols=(), fail_on_errors=False)
            self.requested: list[str] = []
            self.refused: list[str] = []
            self.root = templates_dir().resolve()
            self.generated = dict(generated or {})

        def fetch(self, url: str, headers: Any = None) -> Any:
            self.requested.append(url)
            data = self._asset(url)
            if data is None:
                self.refused.append(url)
                raise ValueError(f"certify's report renderer fetches no external resource: {url}")
            suffix = Path(url).suffix
            return URLFetcherResponse(url, data, {"Content-Type": CONTENT_TYPES[suffix]})

        def _asset(self, url: str) -> bytes | None:
            if not url.startswith(SCHEME):
                return None
            name = url[len(SCHEME):]
            if name in self.generated:
                return self.generated[name]
            path = (self.root / name).resolve()
            if not path.is_relative_to(self.root / "fonts") or path.suffix not in FONT_SUFFIXES:
                return None
            return path.read_bytes() if path.is_file() else None

    return AssetFetcher()
