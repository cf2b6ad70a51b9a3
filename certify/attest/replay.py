"""The replay statement: a second in-toto predicate, saying what an auditor's re-execution
of part of a signed audit found. It names the audit it checked by the digests of that
audit's envelope and evidence, so it can only be read beside the exact claim it tests.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from certify import __version__
from certify._io import atomic_write_bytes, canonical_json, format_time, sha256_bytes
from certify.attest import statement
from certify.attest.sign import signed_envelope

PREDICATE_TYPE = "https://certify.dev/attestation/replay/v1"
FILE_NAME = "certify.replay.intoto.jsonl"


def build(run_dir: Path, result: dict[str, Any], signed_at: datetime | None = None) -> bytes:
    """The Statement's payload: subjects are the audit's envelope (when signed) and evidence."""
    run_dir = Path(run_dir)
    subject = []
    envelope = run_dir / statement.ENVELOPE_NAME
    if envelope.is_file():
        subject.append({"name": statement.ENVELOPE_NAME,
                        "digest": {"sha256": sha256_bytes(envelope.read_bytes())},
                        "annotations": {"certify.role": "audit attestation"}})
    evidence = (run_dir / statement.EVIDENCE_NAME).read_bytes()
    subject.append({"name": statement.EVIDENCE_NAME, "digest": {"sha256": sha256_bytes(evidence)},
                    "annotations": {"certify.role": "evidence"}})
    run_id = json.loads(evidence).get("run", {}).get("run_id")
    predicate = {"certifyVersion": __version__, "auditRunId": run_id,
                 "replayedAt": format_time(signed_at or datetime.now(UTC)), **result}
    return canonical_json({"_type": statement.STATEMENT_TYPE, "subject": subject,
                           "predicateType": PREDICATE_TYPE, "predicate": predicate})


def write(path: Path, run_dir: Path, result: dict[str, Any], key: Path) -> Path:
    """Sign the replay statement with ``key`` and write it (one DSSE envelope line)."""
    atomic_write_bytes(path, signed_envelope(build(run_dir, result), Path(key)))
    return path
