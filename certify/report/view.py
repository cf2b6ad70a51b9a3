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
from certify.policy.schema import CONDITIONS, Policy, condition_name
from certify.report import check_text
from certify.report.disclosures import Disclosures, disclosures
from certify.report.executive import Executive, executive
from certify.report.methodology import Methodology, digest_index, environment, methodology
from certify.report.plots import Chart, Curve, charts, curves
from certify.report.samples import SampleSet, pick
from certify.report.text import num, one_line
from certify.report.uplift import UpliftRow, uplift_rows

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
    """The signer's key as the cover names it, or that the report was rendered unsigned."""
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
    notes: list[str] = field(default_factory=list)
    """What the attacks and judges behind these checks disclosed (see Methodology)."""
    matrices: dict[str, tuple[str, check_text.Table]] = field(default_factory=dict)
    """Per generalization check id: the held-out categories named, and the in-domain vs
    held-out matrix."""
    charts: dict[str, list[Chart]] = field(default_factory=dict)
    """Per check id: the figures drawn beside it (benign fine-tuning, generalization, cost
    to break; report/plots.py)."""


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
    disclosures: Disclosures
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
    executive: Executive
    """Page 1 in words: the verdict sentence, the deciding checks, budget and cost."""
    attestation: list[tuple[str, str]]
    """What the attestation over this report binds (How to verify this report)."""
    extra: dict[str, Any] = field(default_factory=dict)
    uplift: list[UpliftRow] = field(default_factory=list)
    """Share of compliance that carried uplift, per cell and checkpoint (report/uplift.py)."""
    uplift_unscored: list[str] = field(default_factory=list)
    """Harm evaluations whose judges cannot tell compliance from uplift."""

    @property
    def disclosure_notes(self) -> list[str]:
        """Every condition's disclosure sentences once, in condition order (summary.md)."""
        out: list[str] = []
        for section in self.conditions:
            out += [n for n in section.notes if n not in out]
        return out


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


def signer_line(signer: str | None) -> str:
    """``signer`` is the signing key as ``certify.attest.keys.describe`` names it."""
    if signer is None:
        return "not signed when this report was rendered (see certify.intoto.jsonl)"
    return f"{signer} (confirm it against the signer's published key)"


def cover(evidence: Evidence, signer: str | None) -> Cover:
    policy = evidence.policy
    meta = policy.get("meta", {})
    verdict, code, summary = _verdict_text(evidence)
    conditions = [(condition_name(k), v.upper()) for k, v in
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
        run_id=one_line(evidence.run.get("run_id"), 80), signer=signer_line(signer),
        scope=one_line(evidence.scope, 1200))


def check_rows(evidence: Evidence) -> list[CheckRow]:
    if evidence.verdict is None:
        return []
    return [CheckRow(one_line(c.id, 80), condition_name(c.condition), c.required,
                     c.verdict.upper(), check_text.observed_text(c),
                     check_text.threshold_text(c), one_line(c.reason, 600))
            for c in evidence.verdict.checks]


def _attacks_read(results: list[Any]) -> list[str]:
    """Attack ids whose measurements these check results read (rows and observed points)."""
    ids: list[str] = []
    for result in results:
        points = [*result.rows, *(v for v in result.observed.values() if isinstance(v, dict))]
        for row in points:
            attack = row.get("attack")
            if isinstance(attack, str) and attack not in ids:
                ids.append(attack)
    return ids


def condition_sections(evidence: Evidence, rows: list[CheckRow], disclosed: Disclosures,
                       figures: list[Chart] | None = None) -> list[ConditionSection]:
    verdicts = evidence.verdict.conditions if evidence.verdict else {}
    results = evidence.verdict.checks if evidence.verdict else []
    cell_ids = {c.id for c in evidence.cells}
    sections = []
    for key, (name, question) in CONDITIONS.items():
        mine = [r for r in results if r.condition == key]
        served = [(row, check_text.detail_table(result, cell_ids))
                  for row, result in zip(rows, results, strict=True) if result.condition == key]
        notes = [n for r in mine for n in check_text.check_notes(r)]
        notes += disclosed.for_attacks(_attacks_read(mine))
        if key == "validity" and any(r.check == "judge_validity" for r in mine):
            notes += disclosed.judges + disclosed.ensembles
        verdict = verdicts.get(key)
        matrices = {one_line(r.id, 80): m for r in mine
                    if (m := check_text.held_out_matrix(r)) is not None}
        beside: dict[str, list[Chart]] = {}
        for chart in figures or []:
            if any(r.id == chart.check for r in mine):
                beside.setdefault(one_line(chart.check, 80), []).append(chart)
        sections.append(ConditionSection(key, name, question,
                                         verdict.upper() if verdict else "NOT ASSESSED", served,
                                         notes, matrices, beside))
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


def attestation_rows(evidence: Evidence, evidence_sha256: str,
                     signer: str | None) -> list[tuple[str, str]]:
    """What the attestation over this report holds, as far as it is known when the report
    is rendered (it is signed afterwards, so its own digest and the signing time live in
    the attestation, not here)."""
    from certify.attest import statement

    window = statement.validity(evidence.model_dump(mode="json", by_alias=True))
    candidate = evidence.models.get("candidate") or {}
    return [
        ("format", f"in-toto Statement v1 in a DSSE envelope ({statement.ENVELOPE_NAME}), "
                   f"predicate type {statement.PREDICATE_TYPE}"),
        ("subjects", one_line(f"the candidate model {candidate.get('spec')} (root digest "
                              f"sha256:{candidate.get('root_digest')}), "
                              f"{statement.EVIDENCE_NAME} (sha256:{evidence_sha256}), "
                              f"{statement.REPORT_NAME} (this file); the per-sample files "
                              "through their digests in the evidence", 600)),
        ("signing key", signer_line(signer)),
        ("signing time", "recorded in the attestation (its predicate's signedAt), which is "
                         "made after this report is rendered"),
        ("validity window", f"{window['from']} to {window['until']} ({window['days']} days "
                            "from the audit's completion, the policy's evidence.validity_days)"),
    ]


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


def build(run_dir: Path, evidence: Evidence, evidence_bytes: bytes, policy: Policy,
          signer: str | None, *, with_figures: bool = True) -> ReportView:
    """The view of ``evidence`` (decided under ``policy``, its effective policy), signed by
    ``signer`` (None: unsigned); ``with_figures=False`` skips matplotlib (text-only views)."""
    per_eval = policy.evidence.samples_per_eval
    redact = policy.evidence.redact_harmful
    samples, warnings = pick(run_dir, evidence, per_eval, redact)
    rows = check_rows(evidence)
    disclosed = disclosures(evidence)
    env, packages = environment(evidence)
    uplift, uplift_unscored = uplift_rows(evidence)
    return ReportView(
        title=REPORT_TITLE,
        created=evidence.run.get("collected") or evidence.run.get("created") or "",
        cover=cover(evidence, signer), checks=rows,
        conditions=condition_sections(evidence, rows, disclosed,
                                      charts(evidence, policy) if with_figures else []),
        curves=curves(evidence, policy) if with_figures else [],
        clauses=clause_rows(evidence), method=methodology(evidence, policy), disclosures=disclosed,
        samples=samples,
        sample_warnings=warnings, samples_per_eval=per_eval, redacted=redact,
        limitations=[one_line(x, 800) for x in evidence.limitations],
        environment=env, packages=packages,
        digests=digest_index(evidence, sha256_bytes(evidence_bytes)),
        evidence_sha256=sha256_bytes(evidence_bytes), verify_command=verify_command(evidence),
        executive=executive(evidence),
        attestation=attestation_rows(evidence, sha256_bytes(evidence_bytes), signer),
        uplift=uplift, uplift_unscored=uplift_unscored)
