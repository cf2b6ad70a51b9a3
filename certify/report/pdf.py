"""HTML → PDF/A-3b with ``evidence.json`` attached, byte-reproducible.

Reproducible: document dates come from the evidence (dcterms meta), the attachment
dates are pinned to the same moment, the file identifier is a digest of the content,
fonts are the bundled DejaVu files, and SOURCE_DATE_EPOCH is set while writing
(fontTools subsetting reads it). Safe: the only URL fetcher serves packaged fonts,
so hostile text in samples can make the renderer fetch nothing.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from certify._io import sha256_bytes
from certify.report.assets import make_fetcher

PDF_VARIANT = "pdf/a-3b"


@contextlib.contextmanager
def _source_date_epoch(moment: datetime) -> Iterator[None]:
    old = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = str(int(moment.timestamp()))
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("SOURCE_DATE_EPOCH", None)
        else:
            os.environ["SOURCE_DATE_EPOCH"] = old


def _one_af_entry_per_file(document: Any, pdf: Any) -> None:
    """WeasyPrint's PDF/A-3 pass adds each attachment to the catalog's /AF array twice
    (from the name tree and from the file specification); list each file once."""
    import pydyf

    entries = pdf.catalog.get("AF")
    if entries:
        unique: list[Any] = []
        for entry in entries:
            if entry not in unique:
                unique.append(entry)
        pdf.catalog["AF"] = pydyf.Array(unique)


def write_pdf(html: str, generated: dict[str, bytes], evidence_bytes: bytes, created: datetime,
              fetcher: Any = None) -> bytes:
    """Render ``html`` (and its ``generated`` figures) to PDF/A-3b bytes with the evidence
    attached as ``evidence.json``."""
    from weasyprint import HTML, Attachment

    if fetcher is None:
        fetcher = make_fetcher(generated)
    else:
        fetcher.generated.update(generated)
    attachment = Attachment(string=evidence_bytes, name="evidence.json",
                            description="certify evidence this report was rendered from",
                            created=created, modified=created, relationship="Source",
                            url_fetcher=fetcher)
    # Unique per rendered content, yet a pure function of it.
    identifier = sha256_bytes(html.encode("utf-8") + evidence_bytes)[:32].encode("ascii")
    with _source_date_epoch(created):
        data: bytes = HTML(string=html, base_url=None, url_fetcher=fetcher).write_pdf(
            pdf_variant=PDF_VARIANT, pdf_tags=True, attachments=[attachment],
            pdf_identifier=identifier,
            finisher=_one_af_entry_per_file)
    return data
