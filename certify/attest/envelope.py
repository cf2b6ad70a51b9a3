"""The signed envelope and its Statement, parsed strictly (canonical bytes, no surprises).

Anything malformed raises :class:`Malformed`, which verification reports as a failed
step, never as a traceback.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from certify._io import canonical_json
from certify.attest import statement


class Malformed(Exception):
    """A malformed envelope or statement (reported as a failed step, never a traceback)."""


@dataclass(frozen=True)
class Envelope:
    payload: bytes
    payload_type: str
    signatures: list[tuple[str, bytes]]


def _b64(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise Malformed(f"{what} is not a string")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise Malformed(f"{what} is not valid base64") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise Malformed(f"{what} is not canonical base64")
    return raw


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys_seen = [k for k, _ in pairs]
    if len(set(keys_seen)) != len(keys_seen):
        raise Malformed("duplicate JSON keys")
    return dict(pairs)


def strict_json(data: bytes, what: str) -> Any:
    def no_constants(name: str) -> Any:
        raise Malformed(f"{what} contains {name}")

    try:
        return json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates,
                          parse_constant=no_constants)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise Malformed(f"{what} is not valid JSON ({e})") from None


def parse_envelope(data: bytes) -> Envelope:
    """Parse ``certify.intoto.jsonl`` (one DSSE envelope) strictly; raise Malformed otherwise."""
    doc = strict_json(data, "the envelope")
    if not isinstance(doc, dict) or set(doc) != {"payload", "payloadType", "signatures"}:
        raise Malformed("the envelope must have exactly payload, payloadType and signatures")
    sigs = doc["signatures"]
    if not isinstance(sigs, list) or not sigs:
        raise Malformed("the envelope has no signatures")
    parsed = []
    for i, sig in enumerate(sigs):
        if not isinstance(sig, dict) or set(sig) != {"keyid", "sig"} or not isinstance(
                sig["keyid"], str):
            raise Malformed(f"signature {i} must have exactly a string keyid and sig")
        parsed.append((sig["keyid"], _b64(sig["sig"], f"signature {i}")))
    if not isinstance(doc["payloadType"], str):
        raise Malformed("payloadType is not a string")
    # One canonical serialization: any other byte sequence is a modified envelope.
    if canonical_json(doc) + b"\n" != data:
        raise Malformed("the envelope file is not in the canonical form certify writes")
    return Envelope(_b64(doc["payload"], "payload"), doc["payloadType"], parsed)


def parse_statement(payload: bytes) -> dict[str, Any]:
    stmt = strict_json(payload, "the signed payload")
    if not isinstance(stmt, dict) or stmt.get("_type") != statement.STATEMENT_TYPE:
        raise Malformed(f"the payload is not an in-toto Statement v1 ({statement.STATEMENT_TYPE})")
    if stmt.get("predicateType") != statement.PREDICATE_TYPE:
        raise Malformed(f"unknown predicateType {stmt.get('predicateType')!r} (expected "
                   f"{statement.PREDICATE_TYPE})")
    subjects = stmt.get("subject")
    if not isinstance(subjects, list) or not all(
            isinstance(s, dict) and isinstance(s.get("name"), str)
            and isinstance(s.get("digest"), dict) and isinstance(s["digest"].get("sha256"), str)
            for s in subjects):
        raise Malformed("the statement's subjects are malformed")
    if not isinstance(stmt.get("predicate"), dict):
        raise Malformed("the statement has no predicate")
    return stmt


def subject(stmt: dict[str, Any], role: str) -> dict[str, Any] | None:
    return next((s for s in stmt["subject"]
                 if (s.get("annotations") or {}).get("certify.role") == role), None)
