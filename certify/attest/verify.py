"""Verify a signed run directory offline, step by step, and say which step failed.

The envelope is parsed once, strictly (canonical bytes, canonical base64, no unknown
fields). The signature is checked over the DSSE pre-authentication encoding with the
key the auditor pins; the envelope's keyid is only a hint and must agree with that
key. Everything after that reads the verified payload bytes, never the envelope
again. Steps that depend on an unverified statement are reported as not checked.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from certify.attest import keys, statement, steps
from certify.attest.envelope import Envelope, Malformed, parse_envelope, parse_statement
from certify.attest.steps import Verification
from certify.errors import InputError

MAX_ENVELOPE_BYTES = 16 << 20


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
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"run directory {run_dir} does not exist",
                         hint="pass the directory `certify audit --out` wrote")
    pinned = keys.load_public_key(Path(key)) if key is not None else None
    model_source = _model_source(model)
    policy_path = _policy_path(policy)
    result = Verification(run_dir)
    stmt = _guarded(result, "statement", _verified_statement, run_dir, pinned, result)
    evidence_bytes = _guarded(result, "evidence.json", steps.evidence_file, run_dir, stmt,
                              result)
    result.evidence = evidence_bytes
    _guarded(result, "report.pdf", steps.report_file, run_dir, stmt, result)
    _guarded(result, "embedded evidence", steps.embedded_evidence, run_dir, evidence_bytes,
             result)
    evidence = _guarded(result, "samples", steps.samples, run_dir, evidence_bytes, result)
    _guarded(result, "statement = evidence", steps.statement_matches_evidence, stmt, evidence,
             result)
    _guarded(result, "model", steps.model, stmt, model_source, evidence, result)
    _guarded(result, "policy", steps.policy_file, stmt, policy_path, result)
    _guarded(result, "validity window", steps.validity, stmt, now or datetime.now(UTC), result)
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
            raise Malformed(f"larger than {MAX_ENVELOPE_BYTES} bytes")
        env = parse_envelope(path.read_bytes())
    except Malformed as e:
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
        stmt = parse_statement(env.payload)
    except Malformed as e:
        result.add("statement", "fail", str(e))
        return None
    result.add("statement", "pass", f"in-toto Statement v1, predicate {statement.PREDICATE_TYPE}, "
               f"{len(stmt['subject'])} subjects")
    return stmt
