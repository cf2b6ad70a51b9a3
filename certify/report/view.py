"""The report's view-model: every string and number the templates show, computed here.

Templates only lay this out (autoescaped, StrictUndefined). Reading an optional field
that the evidence lacks (no reference model, no clause map, a run without a verdict)
produces an explicit "none"/"not assessed" text here, never a template error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from certify._io import sha256_bytes
from certify.evidence import Evidence
from certify.report import checks as check_text
from certify.report.methodology import Methodology, digest_index, environment, methodology
from certify.report.plots import Curve, curves
from certify.report.samples import SampleSet, pick
from certify.report.text import num, one_line

REPORT_TITLE = "Harmful fine-tuning resistance audit"
CLAUSE_STATUS = {"V": "verified against the legal text", "S": "from a secondary source",
                 "U": "unverified reading"}


@dataclass(frozen=True)
class ModelLine:
    role: str
    spec: str
    kind: str
    revision: str
    digest: str
    size: str


@dataclass(frozen=True)
class Cover:
    evidentiary: bool
    notice: str
    candidate: ModelLine
    reference: ModelLine | None
    verdict: str
    exit_code: str
    summary: str
    conditions: list[tuple[str, str]]
    policy: str
    policy_title: str
    policy_digest: str
    regime: str
    date: str
    run_id: str
    signer: str
    scope: str


@dataclass(frozen=True)
class CheckRow:
    id: str
    condition: str
    required: bool
    verdict: str
    observed: str
    threshold: str
    reason: str


@dataclass(frozen=True)
class ConditionSection:
    key: str
    name: str
    question: str
    verdict: str
    checks: list[tuple[CheckRow, check_text.Table | None]]


@dataclass(frozen=True)
class ClauseRow:
    ref: str
    status: str
    need: str
    checks: list[tuple[str, str]]


@dataclass
class ReportView:
    title: str
    created: str
    cover: Cover
    checks: list[CheckRow]
    conditions: list[ConditionSection]
    curves: list[Curve]
    clauses: list[ClauseRow]
    method: Methodology
    samples: list[SampleSet]
    sample_warnings: list[str]
    samples_per_eval: int
    redacted: bool
    limitations: list[str]
    environment: list[tuple[str, str]]
    packages: list[tuple[str, str]]
    digests: list[tuple[str, str, str]]
    evidence_sha256: str
    verify_command: str
    extra: dict[str, Any] = field(default_factory=dict)


def _model_line(role: str, model: dict[str, Any] | None) -> ModelLine | None:
    if not model:
        return None
    return ModelLine(role, one_line(model.get("spec"), 200), one_line(model.get("kind"), 40),
                     one_line(model.get("revision") or "—", 80),
                     one_line(model.get("root_digest"), 80),
                     f"{num(model.get('n_bytes'))} bytes in {len(model.get('files', {}))} files")


def _verdict_text(evidence: Evidence) -> tuple[str, str, str]:
    v = evidence.verdict
    if v is None:
        return "INCOMPLETE", "3", "the run has no verdict (it did not complete)"
    summary = v.summary.removeprefix(f"{v.overall.upper()}:").strip()
    return v.overall.upper(), str(v.exit_code), one_line(summary, 300)


def cover(evidence: Evidence, signer: str) -> Cover:
    policy = evidence.policy
    meta = policy.get("meta", {})
    verdict, code, summary = _verdict_text(evidence)
    conditions = [(check_text.condition_name(k), v.upper()) for k, v in
                  (evidence.verdict.conditions.items() if evidence.verdict else [])]
    regime = meta.get("regime", "none")
    legal = meta.get("legal_status", "none")
    return Cover(
        evidentiary=bool(meta.get("evidentiary", True)),
        notice=one_line(meta.get("interpretation_notice", ""), 600),
        candidate=_model_line("candidate", evidence.models.get("candidate")),  # type: ignore[arg-type]
        reference=_model_line("reference", evidence.models.get("reference")),
        verdict=verdict, exit_code=code, summary=summary, conditions=conditions,
        policy=one_line(f"{policy.get('id')} {policy.get('version', '')}", 120),
        policy_title=one_line(policy.get("title", ""), 200),
        policy_digest=one_line(policy.get("sha256"), 80),
        regime=one_line(f"{regime} (legal status: {legal})", 200),
        date=one_line(evidence.run.get("collected") or evidence.run.get("created"), 40),
        run_id=one_line(evidence.run.get("run_id"), 80), signer=signer,
        scope=one_line(evidence.scope, 1200))


def check_rows(evidence: Evidence) -> list[CheckRow]:
    if evidence.verdict is None:
        return []
    return [CheckRow(one_line(c.id, 80), check_text.condition_name(c.condition), c.required,
                     c.verdict.upper(), check_text.observed_text(c),
                     check_text.threshold_text(c), one_line(c.reason, 600))
            for c in evidence.verdict.checks]


def condition_sections(evidence: Evidence, rows: list[CheckRow]) -> list[ConditionSection]:
    verdicts = evidence.verdict.conditions if evidence.verdict else {}
    results = evidence.verdict.checks if evidence.verdict else []
    cell_ids = {c.id for c in evidence.cells}
    sections = []
    for key, (name, question) in check_text.CONDITIONS.items():
        served = [(row, check_text.detail_table(result, cell_ids))
                  for row, result in zip(rows, results, strict=True) if result.condition == key]
        verdict = verdicts.get(key)
        sections.append(ConditionSection(key, name, question,
                                         verdict.upper() if verdict else "NOT ASSESSED", served))
    return sections


def clause_rows(evidence: Evidence) -> list[ClauseRow]:
    verdicts = {c.id: c.verdict.upper() for c in evidence.verdict.checks} if evidence.verdict \
        else {}
    out = []
    for clause in evidence.policy.get("clause_map", []):
        status = str(clause.get("status", ""))
        tag = CLAUSE_STATUS.get(status[:1], "")
        out.append(ClauseRow(one_line(clause.get("ref"), 200),
                             one_line(f"{status} — {tag}" if tag else status, 200),
                             one_line(clause.get("need"), 600),
                             [(one_line(c, 80), verdicts.get(c, "NOT RUN"))
                              for c in clause.get("checks", [])]))
    return out


def verify_command(evidence: Evidence) -> str:
    """The command an auditor runs next to this report (RUN_DIR is the report's folder)."""
    source = str(evidence.policy.get("source", evidence.policy.get("id")))
    policy = source.removeprefix("shipped:")
    candidate = evidence.models.get("candidate")
    model = str(candidate["spec"]) if candidate else "MODEL"
    return one_line(f"certify verify RUN_DIR --key SIGNER.pub --model {_quote(model)} "
                    f"--policy {_quote(policy)}", 600)


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


def build(run_dir: Path, evidence: Evidence, evidence_bytes: bytes, signer: str,
          *, with_figures: bool = True) -> ReportView:
    """The view of ``evidence``; ``with_figures=False`` skips matplotlib (text-only views)."""
    spec = evidence.policy.get("effective", {}).get("evidence", {})
    per_eval = int(spec.get("samples_per_eval", 5))
    redact = bool(spec.get("redact_harmful", True))
    samples, warnings = pick(run_dir, evidence, per_eval, redact)
    rows = check_rows(evidence)
    env, packages = environment(evidence)
    return ReportView(
        title=REPORT_TITLE,
        created=evidence.run.get("collected") or evidence.run.get("created") or "",
        cover=cover(evidence, signer), checks=rows,
        conditions=condition_sections(evidence, rows),
        curves=curves(evidence) if with_figures else [],
        clauses=clause_rows(evidence), method=methodology(evidence), samples=samples,
        sample_warnings=warnings, samples_per_eval=per_eval, redacted=redact,
        limitations=[one_line(x, 800) for x in evidence.limitations],
        environment=env, packages=packages,
        digests=digest_index(evidence, sha256_bytes(evidence_bytes)),
        evidence_sha256=sha256_bytes(evidence_bytes), verify_command=verify_command(evidence))
