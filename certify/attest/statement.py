"""The in-toto Statement certify signs: subjects and the audit predicate.

Subjects bind the verdict to exact bytes: the candidate model's root digest
(OpenSSF model-signing's, so other attestations can name the same weights),
``evidence.json`` and ``report.pdf``. The predicate repeats what an auditor or a
policy engine needs without opening the evidence: policy id and digest, verdicts
with their numbers, judges and their validation, validity window, retention rule
and scope. It is built from the evidence *bytes* so it says exactly what they say.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from certify import __version__
from certify._io import canonical_json, format_time, parse_time, sha256_bytes, sha256_file

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://certify.dev/attestation/audit/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
ENVELOPE_NAME = "certify.intoto.jsonl"
EVIDENCE_NAME = "evidence.json"
REPORT_NAME = "report.pdf"
DEFAULT_VALIDITY_DAYS = 365


def validity(evidence: dict[str, Any]) -> dict[str, Any]:
    """From the audit's completion for the policy's ``evidence.validity_days``."""
    spec = evidence["policy"].get("effective", {}).get("evidence", {})
    days = int(spec.get("validity_days", DEFAULT_VALIDITY_DAYS))
    start = parse_time(evidence["run"].get("collected") or evidence["run"]["created"])
    return {"from": format_time(start), "until": format_time(start + timedelta(days=days)),
            "days": days}


def _check(check: dict[str, Any]) -> dict[str, Any]:
    return {k: check[k] for k in ("id", "check", "condition", "required", "verdict", "reason",
                                  "observed", "threshold")}


def _judge(judge: dict[str, Any]) -> dict[str, Any]:
    v = judge.get("validation") or {}
    dataset = v.get("dataset") or {}
    return {"eval": judge.get("eval"), "name": judge.get("name"), "version": judge.get("version"),
            "validation": {"n": v.get("n"), "accuracy": v.get("accuracy"),
                           "falsePositiveRate": v.get("false_positive_rate"),
                           "falseNegativeRate": v.get("false_negative_rate"),
                           "dataset": {"name": dataset.get("name"),
                                       "sha256": dataset.get("sha256")}} if v else None}


def _model(model: dict[str, Any] | None) -> dict[str, Any] | None:
    if model is None:
        return None
    return {"spec": model["spec"], "kind": model.get("kind"), "revision": model.get("revision"),
            "rootDigest": {"sha256": model["root_digest"]}}


def predicate(evidence: dict[str, Any], signed_at: datetime) -> dict[str, Any]:
    policy, verdict = evidence["policy"], evidence.get("verdict") or {}
    retention = policy.get("effective", {}).get("evidence", {}).get("retention", {})
    return {
        "certify": {"version": evidence["certify_version"], "signedWith": __version__,
                    "revision": evidence["environment"].get("certify_revision")},
        "run": {k: evidence["run"].get(k) for k in ("run_id", "created", "collected", "status")},
        "policy": {"id": policy["id"], "version": policy.get("version"),
                   "title": policy.get("title"), "source": policy.get("source"),
                   "digest": {"sha256": policy["sha256"]},
                   "files": [{"role": f["role"], "source": f["source"], "sha256": f["sha256"]}
                             for f in policy.get("files", [])],
                   "evidentiary": policy.get("meta", {}).get("evidentiary", True)},
        "models": {role: _model(m) for role, m in evidence["models"].items()},
        "verdict": {"overall": verdict.get("overall"), "exitCode": verdict.get("exit_code"),
                    "summary": verdict.get("summary"), "conditions": verdict.get("conditions"),
                    "checks": [_check(c) for c in verdict.get("checks", [])]},
        "judges": [_judge(j) for j in evidence.get("judges", [])],
        "datasets": [{"name": d.get("name"), "sha256": d.get("sha256"), "n": d.get("n")}
                     for d in evidence.get("datasets", [])],
        "validity": validity(evidence),
        "retention": {"minDays": retention.get("min_days"), "rule": retention.get("rule", "")},
        "scope": evidence.get("scope", ""),
        "limitations": evidence.get("limitations", []),
        "assuranceLevel": "self_attested",
        "signedAt": format_time(signed_at),
    }


def subjects(run_dir: Path, evidence: dict[str, Any], evidence_bytes: bytes) -> list[dict[str,
                                                                                         Any]]:
    candidate = evidence["models"]["candidate"]
    out = [{"name": candidate["spec"], "digest": {"sha256": candidate["root_digest"]},
            "annotations": {"certify.role": "model",
                            "certify.digest": "OpenSSF model-signing root digest"}},
           {"name": EVIDENCE_NAME, "digest": {"sha256": sha256_bytes(evidence_bytes)},
            "annotations": {"certify.role": "evidence"}}]
    report = run_dir / REPORT_NAME
    if report.is_file():
        out.append({"name": REPORT_NAME, "digest": {"sha256": sha256_file(report)},
                    "annotations": {"certify.role": "report"}})
    return out


def build(run_dir: Path, evidence_bytes: bytes, signed_at: datetime) -> bytes:
    """The Statement's payload bytes (canonical JSON) for the run in ``run_dir``."""
    evidence = json.loads(evidence_bytes)
    statement = {"_type": STATEMENT_TYPE,
                 "subject": subjects(run_dir, evidence, evidence_bytes),
                 "predicateType": PREDICATE_TYPE,
                 "predicate": predicate(evidence, signed_at)}
    return canonical_json(statement)
