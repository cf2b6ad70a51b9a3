"""Sign a run directory: a DSSE envelope around the in-toto Statement, one JSON line.

The signer's public key is written into the run directory before the report is
rendered (``certify audit --key`` does it up front; ``certify sign`` re-renders when
the key is new), so the report's cover names the key that signs it; the report's
digest is then taken and signed. ``certify.pub`` in a run directory is a
convenience copy: verification authenticates against a key the auditor pins.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from certify._io import atomic_write_bytes, canonical_json
from certify.attest import keys, statement
from certify.errors import InputError


def envelope_line(payload: bytes, payload_type: str, signatures: list[dict[str, str]]) -> bytes:
    """The envelope exactly as certify writes it (verify demands these canonical bytes)."""
    return canonical_json({"payload": base64.b64encode(payload).decode("ascii"),
                           "payloadType": payload_type, "signatures": signatures}) + b"\n"


def prepare_signer(run_dir: Path, key: Path) -> bool:
    """Write the signer's public key into ``run_dir`` (before rendering, so the report's
    cover names it). True when it changed, i.e. views rendered earlier are stale."""
    _, public_pem = keys.load_signer(Path(key))
    path = Path(run_dir) / keys.PUBLIC_NAME
    if path.is_file() and path.read_bytes() == public_pem:
        return False
    atomic_write_bytes(path, public_pem)
    return True


def _stale_report(run_dir: Path, evidence_bytes: bytes) -> bool:
    """Does report.pdf embed other evidence than evidence.json (it would never verify)?"""
    from certify.attest.checks import pdf_attachment

    pdf = run_dir / statement.REPORT_NAME
    if not pdf.is_file():
        return False
    try:
        return pdf_attachment(pdf, statement.EVIDENCE_NAME) != evidence_bytes
    except Exception:  # an unreadable PDF is stale too; rendering replaces it
        return True


def _rerender_views(run_dir: Path, progress: Any) -> None:
    present = [fmt for fmt, name in (("pdf", "report.pdf"), ("html", "report.html"))
               if (run_dir / name).is_file()]
    if present:
        from certify.report import render_all

        render_all(run_dir, present, progress=progress)


def sign_run(run_dir: Path, key: Path, *, progress: Any = None,
             now: datetime | None = None) -> Path:
    """Sign ``run_dir`` with the private key at ``key``; return the envelope's path."""
    from securesystemslib.dsse import Envelope

    run_dir = Path(run_dir)
    evidence_path = run_dir / statement.EVIDENCE_NAME
    if not evidence_path.is_file():
        raise InputError(f"{run_dir} has no {statement.EVIDENCE_NAME}; nothing to sign",
                         hint="sign the directory a finished `certify audit` wrote")
    signer, _ = keys.load_signer(Path(key))
    evidence_bytes = evidence_path.read_bytes()
    if prepare_signer(run_dir, Path(key)) or _stale_report(run_dir, evidence_bytes):
        _rerender_views(run_dir, progress)
    payload = statement.build(run_dir, evidence_bytes, now or datetime.now(UTC))
    envelope = Envelope(payload, statement.PAYLOAD_TYPE, {})
    signature = envelope.sign(signer)
    sig_b64 = base64.b64encode(bytes.fromhex(signature.signature)).decode("ascii")
    out = run_dir / statement.ENVELOPE_NAME
    atomic_write_bytes(out, envelope_line(payload, statement.PAYLOAD_TYPE,
                                          [{"keyid": signature.keyid, "sig": sig_b64}]))
    return out
