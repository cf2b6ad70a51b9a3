"""Sign a run directory: a DSSE envelope around the in-toto Statement, one JSON line.

Signing is the last stage of the pipeline and renders nothing: the conductor renders
the report first with the signer's identity (:func:`signer_identity`) on its cover,
then signs the evidence and the report as they are. ``certify.pub`` in a run directory
is a convenience copy written here: verification authenticates against a key the
auditor pins, never against it.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

from certify._io import atomic_write_bytes, canonical_json
from certify.attest import keys, statement
from certify.errors import InputError


def envelope_line(payload: bytes, payload_type: str, signatures: list[dict[str, str]]) -> bytes:
    """The envelope exactly as certify writes it (verify demands these canonical bytes)."""
    return canonical_json({"payload": base64.b64encode(payload).decode("ascii"),
                           "payloadType": payload_type, "signatures": signatures}) + b"\n"


def signer_identity(key: Path) -> str:
    """The signing key's identity (type and keyid) as reports name it; checks the key."""
    signer, _ = keys.load_signer(Path(key))
    return keys.describe(signer.public_key)


def signed_by(run_dir: Path) -> str | None:
    """The identity of the key whose public half the run directory holds (the last
    signer), or None when it holds none or an unusable one."""
    path = Path(run_dir) / keys.PUBLIC_NAME
    if not path.is_file():
        return None
    try:
        return keys.describe(keys.load_public_key(path))
    except InputError:
        return None


def report_is_stale(run_dir: Path, evidence_bytes: bytes) -> bool:
    """Does report.pdf embed other evidence than ``evidence_bytes`` (it would never verify)?"""
    from certify.attest.steps import pdf_attachment

    pdf = Path(run_dir) / statement.REPORT_NAME
    if not pdf.is_file():
        return False
    try:
        return pdf_attachment(pdf, statement.EVIDENCE_NAME) != evidence_bytes
    except Exception:  # an unreadable PDF is stale too; rendering replaces it
        return True


def sign(run_dir: Path, key: Path, *, now: datetime | None = None) -> Path:
    """Sign ``run_dir`` with the private key at ``key``; return the envelope's path."""
    run_dir = Path(run_dir)
    evidence_path = run_dir / statement.EVIDENCE_NAME
    if not evidence_path.is_file():
        raise InputError(f"{run_dir} has no {statement.EVIDENCE_NAME}; nothing to sign",
                         hint="sign the directory a finished `certify audit` wrote")
    _, public_pem = keys.load_signer(Path(key))
    public = run_dir / keys.PUBLIC_NAME
    if not (public.is_file() and public.read_bytes() == public_pem):
        atomic_write_bytes(public, public_pem)
    payload = statement.build(run_dir, evidence_path.read_bytes(), now or datetime.now(UTC))
    out = run_dir / statement.ENVELOPE_NAME
    atomic_write_bytes(out, signed_envelope(payload, Path(key)))
    return out


def signed_envelope(payload: bytes, key: Path) -> bytes:
    """One DSSE envelope line around an in-toto Statement's ``payload``, signed with ``key``."""
    from securesystemslib.dsse import Envelope

    signer, _ = keys.load_signer(Path(key))
    signature = Envelope(payload, statement.PAYLOAD_TYPE, {}).sign(signer)
    sig_b64 = base64.b64encode(bytes.fromhex(signature.signature)).decode("ascii")
    return envelope_line(payload, statement.PAYLOAD_TYPE,
                         [{"keyid": signature.keyid, "sig": sig_b64}])
