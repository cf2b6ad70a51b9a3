"""certify's Python API, for notebooks and pipelines that do not shell out.

``audit`` runs (or resumes) an audit exactly as ``certify audit`` does and returns an
``AuditResult``; ``verify`` checks a signed run directory as ``certify verify`` does and
returns a ``Verification``. Both raise ``certify.errors.CertifyError`` subclasses where the
CLI would exit 2 or 3 (``.exit_code`` says which); a failed gate or a failed verification
is a result, not an exception. ``import certify`` stays light: this module is loaded on
first use of ``certify.audit`` or ``certify.verify``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from certify.attest.steps import Step, Verification
from certify.errors import UsageError
from certify.evidence import Evidence

Verdict = Literal["pass", "fail", "inconclusive", "error"]

__all__ = ["AuditResult", "CheckOutcome", "Step", "Verdict", "Verification", "audit", "verify"]


@dataclass(frozen=True)
class CheckOutcome:
    """One check's verdict and the sentence with the numbers that decided it."""

    id: str
    check: str
    condition: str
    required: bool
    verdict: Verdict
    reason: str


@dataclass(frozen=True)
class AuditResult:
    """A finished audit. ``verdict`` is None when the run did not complete (exit code 3)."""

    run_dir: Path
    verdict: Verdict | None
    exit_code: int
    """What ``certify audit`` would exit with: 0 pass, 1 fail or inconclusive, 3 incomplete."""
    checks: tuple[CheckOutcome, ...]
    outputs: dict[str, Path] = field(default_factory=dict)
    """Files written, by kind: evidence, each report format asked for (pdf, html, junit,
    md), and attestation when signed."""
    evidence: Evidence | None = field(default=None, repr=False)
    """The full evidence record (the typed evidence.json)."""

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"


def _options_type() -> Any:
    from certify.conductor import AuditOptions

    return AuditOptions


def audit(model: str, policy: str, *, reference: str | None = None,
          out: str | Path | None = None, key: str | Path | None = None,
          overlays: Sequence[str] = (), device: str = "cpu",
          formats: Sequence[str] = ("pdf", "html", "junit", "md"), quiet: bool = True,
          **options: Any) -> AuditResult:
    """Audit ``model`` against ``policy`` (a file or a shipped name) and return the result.

    Re-running with the same ``out`` resumes the run directory. ``options`` are the other
    ``certify audit`` options by their Python names (revision, reference_revision,
    executor, ray_address, shard as (i, n), fsdp, dtype, autocast, gradient_checkpointing,
    trust_remote_code, allow_pickle, allow_drift, cell_state). ``quiet=False`` prints the
    progress lines to stderr as the CLI does.
    """
    from certify.conductor import audit as run_audit
    from certify.run import progress as progress_mod

    allowed = {f.name for f in dataclasses.fields(_options_type())} - {
        "model", "policy", "reference", "out", "key", "overlays", "device", "formats", "command"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise UsageError(f"certify.audit() got unknown option(s): {', '.join(unknown)}",
                         hint=f"choose from {', '.join(sorted(allowed))}")
    opts = _options_type()(
        model=model, policy=policy, reference=reference, out=Path(out) if out else None,
        key=Path(key) if key else None, overlays=tuple(overlays), device=device,
        formats=tuple(formats), command=f"certify.audit({model!r}, {policy!r})", **options)
    result = run_audit(opts, progress_mod.auto(quiet))
    evidence = result.evidence
    checks = tuple(CheckOutcome(c.id, c.check, c.condition, c.required, c.verdict, c.reason)
                   for c in (evidence.verdict.checks if evidence.verdict else []))
    return AuditResult(run_dir=result.run_dir,
                       verdict=evidence.verdict.overall if evidence.verdict else None,
                       exit_code=result.exit_code, checks=checks, outputs=dict(result.outputs),
                       evidence=evidence)


def verify(run_dir: str | Path, key: str | Path | None = None, *, model: str | None = None,
           policy: str | None = None) -> Verification:
    """Verify a signed run directory offline (signature with the signer's public ``key``,
    subjects, embedded evidence; ``model`` and ``policy`` re-hashed when given).
    ``.ok`` is True when every step passed; ``.steps`` says what each checked."""
    from certify.attest.verify import verify_run

    return verify_run(Path(run_dir), Path(key) if key is not None else None, model=model,
                      policy=policy)
