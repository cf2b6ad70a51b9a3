"""Replay: an auditor re-executes part of a signed audit and compares with its numbers.

A signature proves who made a claim, not that its numbers are true. ``replay`` re-runs
K cells of a finished audit on the auditor's machine, from the signed plan with the
recorded seeds, data and model digests, and compares every checkpoint's judged counts,
losses and break points with the signed ones, within the tolerance the evidence
declares (the policy's ``statistics.reproducibility``). The cells are drawn at random,
seeded by the attestation's digest, so whoever ran the audit cannot choose which cells
are checked. The cost is about K cells of the original audit.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from certify.assess.agreement import CellAgreement, break_levels, compare_cell
from certify.attest import statement
from certify.conductor.collect import inputs_of, plan_of
from certify.errors import RunError, UsageError, VerificationError
from certify.evidence import CellRecord, Evidence
from certify.plan import CellSpec
from certify.policy.schema import Policy
from certify.run.progress import NullProgress, Progress

DEFAULT_K = 2


@dataclass(frozen=True)
class ReplayOptions:
    run_dir: Path
    key: Path | None = None
    """The signer's public key: the run is verified first, and replay refuses a run that
    does not verify. Without it the numbers come from an unverified evidence.json."""
    cells: tuple[str, ...] = ()
    """Cells named by the auditor; empty: draw ``k`` at random."""
    k: int = DEFAULT_K
    models: dict[str, str] = field(default_factory=dict)
    """role → where the audited model's files are on this machine (default: as recorded)."""
    device: str = "cpu"
    sign_key: Path | None = None
    """Sign a replay statement with this private key."""
    statement: Path | None = None


@dataclass(frozen=True)
class Choice:
    cells: list[str]
    how: str
    """"named" or "drawn: seeded by sha256 of FILE = DIGEST"."""


@dataclass
class ReplayResult:
    run_dir: Path
    choice: Choice
    verified: bool
    tolerance: dict[str, Any]
    cells: list[CellAgreement]
    statement: Path | None = None

    @property
    def agrees(self) -> bool:
        return all(c.agrees for c in self.cells)

    @property
    def exit_code(self) -> int:
        return 0 if self.agrees else VerificationError.exit_code

    def as_json(self) -> dict[str, Any]:
        return {"run_dir": str(self.run_dir), "agrees": self.agrees,
                "verified_signature": self.verified, "choice": {"cells": self.choice.cells,
                                                                "how": self.choice.how},
                "tolerance": self.tolerance, "cells": [c.as_json() for c in self.cells]}


def choose(run_dir: Path, evidence: Evidence, named: tuple[str, ...], k: int,
           evidence_bytes: bytes | None = None) -> Choice:
    """The cells to replay: those named, else ``k`` ok cells drawn with a seed the prover
    cannot choose after the fact (the digest of the signed envelope, else the evidence,
    ``evidence_bytes`` where it has been read already)."""
    ok = sorted(c.id for c in evidence.cells if c.status == "ok")
    if named:
        unknown = [c for c in named if c not in {x.id for x in evidence.cells}]
        if unknown:
            raise UsageError(f"no such cell in {run_dir}: {', '.join(unknown)}; its cells are: "
                             f"{', '.join(ok)}")
        return Choice(list(dict.fromkeys(named)), "named")
    if k < 1:
        raise UsageError("--k must be at least 1")
    source = run_dir / statement.ENVELOPE_NAME
    if source.is_file():
        data = source.read_bytes()
    else:
        source = run_dir / statement.EVIDENCE_NAME
        data = source.read_bytes() if evidence_bytes is None else evidence_bytes
    digest = hashlib.sha256(data).hexdigest()
    drawn = random.Random(int(digest, 16)).sample(ok, min(k, len(ok)))
    return Choice(sorted(drawn), f"drawn: seeded by sha256 of {source.name} = {digest[:16]}…")


def _verify(opts: ReplayOptions) -> bytes | None:
    """The evidence bytes the signature covers, read once; None without ``--key``."""
    if opts.key is None:
        return None
    from certify.attest import verify_run

    result = verify_run(opts.run_dir, opts.key)
    if not result.ok:
        failed = [f"{s.name} ({s.detail})" for s in result.steps if s.status == "fail"]
        raise VerificationError(f"{opts.run_dir} does not verify, so there is no signed claim "
                                f"to replay: {'; '.join(failed)}",
                                hint="run `certify verify RUN_DIR --key PUB` for the details")
    return result.evidence


def _models(evidence: Evidence, roles: set[str], given: dict[str, str]) -> dict[str, Any]:
    """role → WorkerSetup's model entry, for the audited files found on this machine."""
    from certify.errors import CertifyError
    from certify.models.source import identity, resolve

    flag = {"candidate": "--model", "reference": "--reference"}
    out = {}
    for role in sorted(roles):
        recorded = evidence.models.get(role) or {}
        spec = given.get(role) or str(recorded.get("spec", ""))
        try:
            source = resolve(spec, revision=recorded.get("revision"), build=True)
            if not source.path.exists():
                raise FileNotFoundError(source.path)
            ident = identity(source)
        except (CertifyError, OSError) as e:
            raise RunError(f"the audited {role} model ({spec}) is not on this machine: {e}",
                           hint=f"pass {flag[role]} PATH with the audited model's files") from None
        if ident.root_digest != recorded.get("root_digest"):
            raise RunError(f"the {role} model at {spec} is not the one audited: its digest is "
                           f"{ident.root_digest[:16]}…, the evidence records "
                           f"{str(recorded.get('root_digest'))[:16]}…",
                           hint=f"pass {flag[role]} PATH with the audited model's files")
        out[role] = {"source": {"spec": source.spec, "kind": source.kind,
                                "path": str(source.path), "revision": source.revision},
                     "identity": ident.__dict__}
    return out


def _rerun(evidence: Evidence, policy: Policy, specs: list[CellSpec], models: dict[str, Any],
           device: str, progress: Progress) -> list[CellRecord]:
    from certify.run.worker import Worker, WorkerSetup

    run = evidence.run
    worker = Worker(WorkerSetup(policy=policy, models=models, device=device,
                                dtype=str(run.get("dtype") or "float32"),
                                autocast=run.get("autocast"),
                                gradient_checkpointing=bool(run.get("gradient_checkpointing"))))
    # The signed run's baselines: a cell stops early where the signed one could (a
    # capability bound compares with its role's baseline), even when only it is replayed.
    worker.know([c for c in evidence.cells if c.attack_id == "baseline"])
    out = []
    for i, spec in enumerate(specs, 1):
        progress.message(f"replaying cell {i}/{len(specs)}: {spec.id}")
        record, _ = worker.run(spec)
        out.append(record)
    return out


def replay(opts: ReplayOptions, progress: Progress | None = None) -> ReplayResult:
    """Re-run the chosen cells and compare them with the signed ones. Raises UsageError (2),
    RunError (3, e.g. the model's files are missing) or VerificationError (4, the run does
    not verify); a disagreement is a result, with exit code 4."""
    from certify.report import load_evidence

    progress = progress or NullProgress()
    run_dir = Path(opts.run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"run directory {run_dir} does not exist",
                         hint="pass the directory `certify audit --out` wrote")
    signed = _verify(opts)
    evidence, data = load_evidence(run_dir, signed)
    choice = choose(run_dir, evidence, opts.cells, opts.k, data)
    loaded, recorded = inputs_of(evidence)
    plan = plan_of(loaded, recorded, [c["id"] for c in evidence.run.get("plan", [])])
    specs = [next(s for s in plan.cells if s.id == cid) for cid in choice.cells]
    models = _models(evidence, {s.role for s in specs}, opts.models)
    replayed = _rerun(evidence, loaded.policy, specs, models, opts.device, progress)
    tolerance = loaded.policy.statistics.reproducibility
    levels = break_levels(loaded.policy)
    rows = [compare_cell(evidence.cell(r.id), r, tolerance, levels) for r in replayed]
    result = ReplayResult(run_dir, choice, signed is not None, tolerance.model_dump(), rows)
    if opts.sign_key is not None:
        from certify.attest import replay as replay_statement

        path = opts.statement or run_dir.parent / f"{run_dir.name}.{replay_statement.FILE_NAME}"
        result.statement = replay_statement.write(path, run_dir, result.as_json(), opts.sign_key)
    return result
