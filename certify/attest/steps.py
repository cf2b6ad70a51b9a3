"""The verification steps after the signature: subjects, embedded copy, samples, model,
policy, validity window. Each adds one row to the table and never raises on bad data."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from certify._io import parse_time, sha256_bytes, sha256_file
from certify.attest import statement
from certify.attest.envelope import Malformed, strict_json, subject

Status = Literal["pass", "fail", "skip"]

NOT_CHECKED = "not checked: there is no verified statement to compare against"
CLOCK_SKEW = timedelta(minutes=5)


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
    evidence: bytes | None = field(default=None, repr=False)
    """The evidence.json bytes the steps checked: a caller that goes on to read the
    evidence (replay, diff) uses these, so it reads what was verified, and reads it once."""

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(s.status != "fail" for s in self.steps)

    def add(self, name: str, status: Status, detail: str) -> bool:
        self.steps.append(Step(name, status, detail))
        return status != "fail"


def _short(digest: str) -> str:
    return f"sha256:{digest[:16]}…"


def evidence_file(run_dir: Path, stmt: dict[str, Any] | None, result: Verification) -> bytes | None:
    path = run_dir / statement.EVIDENCE_NAME
    data = path.read_bytes() if path.is_file() else None
    digest = sha256_bytes(data) if data is not None else ""
    if stmt is None:
        result.add("evidence.json", "skip", NOT_CHECKED)
        return data
    sub = subject(stmt, "evidence")
    if sub is None:
        result.add("evidence.json", "fail", "the statement has no evidence subject")
    elif data is None:
        result.add("evidence.json", "fail", f"{path.name} is missing from the run directory")
    elif digest != sub["digest"]["sha256"]:
        result.add("evidence.json", "fail", f"digest {_short(digest)} does not match "
                   f"the signed {_short(sub['digest']['sha256'])}: the evidence was modified")
    else:
        result.add("evidence.json", "pass", f"matches the signed digest {_short(digest)}")
    return data


def report_file(run_dir: Path, stmt: dict[str, Any] | None, result: Verification) -> None:
    path = run_dir / statement.REPORT_NAME
    if stmt is None:
        result.add("report.pdf", "skip", NOT_CHECKED)
        return
    sub = subject(stmt, "report")
    if sub is None:
        if path.is_file():
            result.add("report.pdf", "fail", "report.pdf is present but the signature does not "
                       "cover it; re-sign the run (`certify sign`) or remove it")
        else:
            result.add("report.pdf", "skip", "the run has no report.pdf and none was signed")
        return
    if not path.is_file():
        result.add("report.pdf", "fail", "the signed report.pdf is missing")
        return
    digest = sha256_file(path)
    if digest != sub["digest"]["sha256"]:
        result.add("report.pdf", "fail", f"digest {_short(digest)} does not match the signed "
                   f"{_short(sub['digest']['sha256'])}: the report was modified")
    else:
        result.add("report.pdf", "pass", f"matches the signed digest {_short(digest)}")


def embedded_evidence(run_dir: Path, evidence_bytes: bytes | None, result: Verification) -> None:
    path = run_dir / statement.REPORT_NAME
    if not path.is_file():
        result.add("embedded evidence", "skip", "no report.pdf")
        return
    try:
        embedded = pdf_attachment(path, statement.EVIDENCE_NAME)
    except Exception as e:  # pikepdf raises many types on malformed PDFs
        result.add("embedded evidence", "fail", f"cannot read report.pdf's attachments "
                   f"({type(e).__name__})")
        return
    if embedded is None:
        result.add("embedded evidence", "fail", "report.pdf has no evidence.json attachment")
    elif evidence_bytes is None or embedded != evidence_bytes:
        result.add("embedded evidence", "fail", "the evidence.json embedded in report.pdf "
                   "differs from evidence.json")
    else:
        result.add("embedded evidence", "pass", f"report.pdf embeds evidence.json byte for byte "
                   f"({len(embedded)} bytes)")


def pdf_attachment(path: Path, name: str) -> bytes | None:
    """The bytes of the PDF's embedded file ``name`` (pikepdf), or None."""
    import pikepdf

    with pikepdf.open(path) as pdf:
        attached = pdf.attachments.get(name)
        return None if attached is None else bytes(attached.get_file().read_bytes())


def _safe_relative(run_dir: Path, name: Any) -> Path | None:
    if not isinstance(name, str) or not name:
        return None
    rel = PurePosixPath(name)
    if rel.is_absolute() or ".." in rel.parts:
        return None
    return run_dir / rel


def samples(run_dir: Path, evidence_bytes: bytes | None, result: Verification) -> dict[str,
                                                                                       Any] | None:
    """Re-hash every per-sample file the evidence references; return the parsed evidence."""
    if evidence_bytes is None:
        result.add("samples", "fail", "no evidence.json to read the sample digests from")
        return None
    try:
        evidence = strict_json(evidence_bytes, "evidence.json")
        cells = [c for c in evidence["cells"] if c.get("samples_file")]
    except (Malformed, KeyError, TypeError, AttributeError) as e:
        result.add("samples", "fail", f"evidence.json is unreadable: {e}")
        return None
    bad = []
    for cell in cells:
        path = _safe_relative(run_dir, cell["samples_file"])
        if path is None or not path.is_file():
            bad.append(f"{cell['samples_file']!s:.80} (missing or outside the run)")
        elif sha256_file(path) != cell.get("samples_sha256"):
            bad.append(f"{cell['samples_file']} (digest differs)")
    if bad:
        result.add("samples", "fail", f"{len(bad)} of {len(cells)} sample files do not match the "
                   f"evidence: {', '.join(bad[:3])}")
    else:
        result.add("samples", "pass", f"{len(cells)} per-sample files match the digests in the "
                   "evidence")
    return evidence


def statement_matches_evidence(stmt: dict[str, Any] | None, evidence: dict[str, Any] | None,
                               result: Verification) -> None:
    if stmt is None or evidence is None:
        result.add("statement = evidence", "skip", NOT_CHECKED)
        return
    problems = []
    model = subject(stmt, "model")
    candidate = (evidence.get("models") or {}).get("candidate") or {}
    if model is None or model["digest"]["sha256"] != candidate.get("root_digest"):
        problems.append("model digest")
    pred = stmt["predicate"]
    if (pred.get("policy") or {}).get("digest", {}).get("sha256") != evidence["policy"]["sha256"]:
        problems.append("policy digest")
    signed = {c.get("id"): c.get("verdict") for c in pred.get("verdict", {}).get("checks", [])}
    verdict = evidence.get("verdict") or {}
    recorded = {c["id"]: c["verdict"] for c in verdict.get("checks", [])}
    if pred.get("verdict", {}).get("overall") != verdict.get("overall") or signed != recorded:
        problems.append("verdicts")
    if problems:
        result.add("statement = evidence", "fail", f"the signed predicate and evidence.json "
                   f"disagree on: {', '.join(problems)}")
    else:
        result.add("statement = evidence", "pass", f"model digest, policy digest and "
                   f"{len(recorded)} check verdicts agree ({verdict.get('overall')})")


def model(stmt: dict[str, Any] | None, source: Any, evidence: dict[str, Any] | None,
          result: Verification) -> None:
    """Re-hash the model at ``source`` (a resolved ModelSource) and compare with the subject."""
    if source is None:
        result.add("model", "skip", "pass --model PATH to re-hash the model's files")
        return
    if stmt is None or subject(stmt, "model") is None:
        result.add("model", "skip", NOT_CHECKED)
        return
    from certify.errors import CertifyError
    from certify.models.source import identity

    try:
        ident = identity(source)
    except (CertifyError, OSError) as e:
        result.add("model", "fail", f"cannot hash {source.spec}: {e}")
        return
    signed = subject(stmt, "model")["digest"]["sha256"]  # type: ignore[index]
    if ident.root_digest == signed:
        result.add("model", "pass", f"{source.spec}: root digest {_short(signed)} over "
                   f"{len(ident.files)} files matches")
        return
    recorded = ((evidence or {}).get("models", {}).get("candidate") or {}).get("files", {})
    changed = sorted(set(recorded) ^ set(ident.files)
                     | {f for f in recorded if ident.files.get(f) not in (None, recorded[f])})
    result.add("model", "fail", f"{source.spec}: root digest {_short(ident.root_digest)} is not "
               f"the signed {_short(signed)}; files that differ: {', '.join(changed[:5]) or '?'}")


def policy_file(stmt: dict[str, Any] | None, path: Path | None, result: Verification) -> None:
    if path is None:
        result.add("policy", "skip", "pass --policy FILE to compare the policy's digest")
        return
    if stmt is None:
        result.add("policy", "skip", NOT_CHECKED)
        return
    digest = sha256_file(path)
    policy = stmt["predicate"].get("policy") or {}
    signed = (policy.get("digest") or {}).get("sha256")
    if digest == signed:
        result.add("policy", "pass", f"{path.name}: {_short(digest)} is the signed policy "
                   f"{policy.get('id')} {policy.get('version')}")
        return
    role = next((f["role"] for f in policy.get("files", []) if f.get("sha256") == digest), None)
    extra = f" (it is the audit's {role} file, not its policy)" if role else ""
    result.add("policy", "fail", f"{path.name}: {_short(digest)} is not the signed policy "
               f"digest {_short(str(signed))}{extra}")


def validity(stmt: dict[str, Any] | None, now: datetime, result: Verification) -> None:
    if stmt is None:
        result.add("validity window", "skip", NOT_CHECKED)
        return
    window = stmt["predicate"].get("validity") or {}
    try:
        start = parse_time(window["from"])
        until = parse_time(window["until"])
    except (KeyError, TypeError, ValueError):
        result.add("validity window", "fail", "the predicate has no readable validity window")
        return
    if now > until:
        result.add("validity window", "fail", f"expired {window['until']} "
                   f"({(now - until).days} days ago); the policy allows {window.get('days')} days")
    elif now < start - CLOCK_SKEW:
        result.add("validity window", "fail", f"starts {window['from']}, in the future")
    else:
        result.add("validity window", "pass", f"valid until {window['until']} "
                   f"({(until - now).days} days left)")
