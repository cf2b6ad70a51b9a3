"""Verify a signed run directory offline, step by step, and say which step failed.

The envelope is parsed once, strictly (canonical bytes, canonical base64, no unknown
fields). The signature is checked over the DSSE pre-authentication encoding with the
key the auditor pins; the envelope's keyid is only a hint and must agree with that
key. Everything after that reads the verified payload bytes, never the envelope
again. Steps that depend on an unverified statement are reported as not checked.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from certify._io import canonical_json
from certify.attest import keys, statement
from certify.errors import InputError

Status = Literal["pass", "fail", "skip"]
MAX_ENVELOPE_BYTES = 16 << 20


@dataclass(frozen=True)
class Step:
    name: str
    status: Status
    detail: str


@dataclass
class Verification:
    """The table ``certify verify`` prints; ``ok`` when no step failed."""

    run_dir: Path
    steps: list[Step] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(s.status != "fail" for s in self.steps)

    def add(self, name: str, status: Status, detail: str) -> bool:
        self.steps.append(Step(name, status, detail))
        return status != "fail"


class _Bad(Exception):
    """A malformed envelope or statement (reported as a failed step, never a traceback)."""


@dataclass(frozen=True)
class Envelope:
    payload: bytes
    payload_type: str
    signatures: list[tuple[str, bytes]]


def _b64(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise _Bad(f"{what} is not a string")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _Bad(f"{what} is not valid base64") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise _Bad(f"{what} is not canonical base64")
    return raw


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys_seen = [k for k, _ in pairs]
    if len(set(keys_seen)) != len(keys_seen):
        raise _Bad("duplicate JSON keys")
    return dict(pairs)


def _strict_json(data: bytes, what: str) -> Any:
    def no_constants(name: str) -> Any:
        raise _Bad(f"{what} contains {name}")

    try:
        return json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates,
                          parse_constant=no_constants)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _Bad(f"{what} is not valid JSON ({e})") from None


def parse_envelope(data: bytes) -> Envelope:
    """Parse ``certify.intoto.jsonl`` (one DSSE envelope) strictly; raise _Bad otherwise."""
    doc = _strict_json(data, "the envelope")
    if not isinstance(doc, dict) or set(doc) != {"payload", "payloadType", "signatures"}:
        raise _Bad("the envelope must have exactly payload, payloadType and signatures")
    sigs = doc["signatures"]
    if not isinstance(sigs, list) or not sigs:
        raise _Bad("the envelope has no signatures")
    parsed = []
    for i, sig in enumerate(sigs):
        if not isinstance(sig, dict) or set(sig) != {"keyid", "sig"} or not isinstance(
                sig["keyid"], str):
            raise _Bad(f"signature {i} must have exactly a string keyid and sig")
        parsed.append((sig["keyid"], _b64(sig["sig"], f"signature {i}")))
    if not isinstance(doc["payloadType"], str):
        raise _Bad("payloadType is not a string")
    # One canonical serialization: any other byte sequence is a modified envelope.
    if canonical_json(doc) + b"\n" != data:
        raise _Bad("the envelope file is not in the canonical form certify writes")
    return Envelope(_b64(doc["payload"], "payload"), doc["payloadType"], parsed)


def _pae(payload_type: str, payload: bytes) -> bytes:
    from securesystemslib.dsse import Envelope as DsseEnvelope

    return DsseEnvelope(payload, payload_type, {}).pae()


def check_signature(env: Envelope, key: Any) -> tuple[bool, str]:
    """Does a signature in ``env`` verify with ``key`` over PAE? The keyid is not trusted:
    every signature is tried, and a verifying one must carry the key's own keyid."""
    from securesystemslib.exceptions import UnverifiedSignatureError, VerificationError
    from securesystemslib.signer import Signature

    pae = _pae(env.payload_type, env.payload)
    for keyid, sig in env.signatures:
        try:
            key.verify_signature(Signature(key.keyid, sig.hex()), pae)
        except (UnverifiedSignatureError, VerificationError):
            continue
        if keyid != key.keyid:
            return False, (f"the signature verifies, but the envelope names keyid {keyid[:16]}… "
                           f"instead of {key.keyid[:16]}…; refusing an altered envelope")
        return True, f"valid signature over the DSSE PAE by {keys.describe(key)}"
    return False, (f"no signature in the envelope verifies with {keys.describe(key)} "
                   f"({len(env.signatures)} tried)")


def verify_run(run_dir: Path, key: Path | None = None, *, model: str | None = None,
               policy: str | None = None, now: datetime | None = None) -> Verification:
    """Run every verification step on ``run_dir``. Raises InputError/UsageError only for
    unusable arguments (no such directory, key, model or policy file); a bad run
    directory is never an exception, always a failed step."""
    from certify.attest import checks

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"run directory {run_dir} does not exist",
                         hint="pass the directory `certify audit --out` wrote")
    pinned = keys.load_public_key(Path(key)) if key is not None else None
    model_source = _model_source(model)
    policy_path = _policy_path(policy)
    result = Verification(run_dir)
    stmt = _guarded(result, "statement", _verified_statement, run_dir, pinned, result)
    evidence_bytes = _guarded(result, "evidence.json", checks.evidence_file, run_dir, stmt,
                              result)
    _guarded(result, "report.pdf", checks.report_file, run_dir, stmt, result)
    _guarded(result, "embedded evidence", checks.embedded_evidence, run_dir, evidence_bytes,
             result)
    evidence = _guarded(result, "samples", checks.samples, run_dir, evidence_bytes, result)
    _guarded(result, "statement = evidence", checks.statement_matches_evidence, stmt, evidence,
             result)
    _guarded(result, "model", checks.model, stmt, model_source, evidence, result)
    _guarded(result, "policy", checks.policy_file, stmt, policy_path, result)
    _guarded(result, "validity window", checks.validity, stmt, now or datetime.now(UTC), result)
    return result


def _guarded(result: Verification, name: str, step: Any, *args: Any) -> Any:
    """Run one step; data it did not expect (a signed but odd predicate, evidence with
    missing fields) fails that step instead of escaping as a traceback."""
    try:
        return step(*args)
    except (KeyError, TypeError, AttributeError, ValueError, OSError) as e:
        result.add(name, "fail", f"could not check: {type(e).__name__}: {str(e)[:200]}")
        return None


def _model_source(spec: str | None) -> Any:
    if spec is None:
        return None
    from certify.errors import ModelError
    from certify.models.source import resolve

    source = resolve(spec, build=False)
    if not source.path.exists():
        raise ModelError(f"model {spec!r} is not on this machine ({source.path})",
                         hint="give the directory or file of the audited model")
    return source


def _policy_path(name: str | None) -> Path | None:
    if name is None:
        return None
    from certify.policy.load import resolve

    return resolve(name)[0]


def _verified_statement(run_dir: Path, pinned: Any, result: Verification) -> dict[str,
                                                                                   Any] | None:
    """Envelope → signature → payload type → statement; None unless all four pass."""
    path = run_dir / statement.ENVELOPE_NAME
    if not path.is_file():
        result.add("envelope", "fail", f"no {statement.ENVELOPE_NAME}: the run is not signed "
                   "(sign it with `certify sign RUN_DIR --key KEY`)")
        return None
    try:
        if path.stat().st_size > MAX_ENVELOPE_BYTES:
            raise _Bad(f"larger than {MAX_ENVELOPE_BYTES} bytes")
        env = parse_envelope(path.read_bytes())
    except _Bad as e:
        result.add("envelope", "fail", f"{statement.ENVELOPE_NAME}: {e}")
        return None
    result.add("envelope", "pass", f"{statement.ENVELOPE_NAME}: one DSSE envelope, "
               f"{len(env.signatures)} signature(s)")
    if pinned is None:
        result.add("signature", "fail", "no --key given: a signature can only be trusted "
                   "against a public key you obtained from the signer, not one shipped in the "
                   "run directory; pass --key PUB")
        return None
    ok, detail = check_signature(env, pinned)
    if not result.add("signature", "pass" if ok else "fail", detail):
        return None
    if not result.add("payload type", "pass" if env.payload_type == statement.PAYLOAD_TYPE
                      else "fail", f"{env.payload_type!r} (expected {statement.PAYLOAD_TYPE})"):
        return None
    try:
        stmt = _statement(env.payload)
    except _Bad as e:
        result.add("statement", "fail", str(e))
        return None
    result.add("statement", "pass", f"in-toto Statement v1, predicate {statement.PREDICATE_TYPE}, "
               f"{len(stmt['subject'])} subjects")
    return stmt


def _statement(payload: bytes) -> dict[str, Any]:
    stmt = _strict_json(payload, "the signed payload")
    if not isinstance(stmt, dict) or stmt.get("_type") != statement.STATEMENT_TYPE:
        raise _Bad(f"the payload is not an in-toto Statement v1 ({statement.STATEMENT_TYPE})")
    if stmt.get("predicateType") != statement.PREDICATE_TYPE:
        raise _Bad(f"unknown predicateType {stmt.get('predicateType')!r} (expected "
                   f"{statement.PREDICATE_TYPE})")
    subjects = stmt.get("subject")
    if not isinstance(subjects, list) or not all(
            isinstance(s, dict) and isinstance(s.get("name"), str)
            and isinstance(s.get("digest"), dict) and isinstance(s["digest"].get("sha256"), str)
            for s in subjects):
        raise _Bad("the statement's subjects are malformed")
    if not isinstance(stmt.get("predicate"), dict):
        raise _Bad("the statement has no predicate")
    return stmt


def subject(stmt: dict[str, Any], role: str) -> dict[str, Any] | None:
    return next((s for s in stmt["subject"]
                 if (s.get("annotations") or {}).get("certify.role") == role), None)
