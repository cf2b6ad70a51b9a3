"""`certify audit`: load the policy, resolve the models, plan, run the cells, decide, record.

This is the one library function the ``audit`` command calls. Everything that can
be checked is checked before any training: the policy, the model files, every
dataset the attacks and evaluations name, and the run directory's identity.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from certify import environment
from certify.errors import UsageError
from certify.evidence import Evidence
from certify.plan import Plan, make_plan
from certify.policy.load import LoadedPolicy, load_policy
from certify.run.progress import NullProgress, Progress
from certify.run.rundir import RunDir, storage_errors

if TYPE_CHECKING:
    from certify.run.collect import RunResult

log = logging.getLogger(__name__)


@dataclass
class AuditOptions:
    model: str
    policy: str
    reference: str | None = None
    out: Path | None = None
    overlays: tuple[str, ...] = ()
    revision: str | None = None
    reference_revision: str | None = None
    executor: str = "local"
    ray_address: str | None = None
    shard: tuple[int, int] | None = None
    device: str = "cpu"
    fsdp: int = 1
    """Processes (GPUs with --device cuda) that train each full fine-tuning cell (FSDP)."""
    dtype: str = "float32"
    autocast: str | None = None
    gradient_checkpointing: bool = False
    trust_remote_code: bool = False
    allow_pickle: bool = False
    allow_drift: bool = False
    key: Path | None = None
    formats: tuple[str, ...] = ("pdf", "html", "junit", "md")
    command: str = ""


def default_out(policy_id: str, model: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", model.replace("builtin:", "")).strip("-")[:60]
    return Path("runs") / f"{policy_id}--{slug or 'model'}"


def resolve_models(opts: AuditOptions, loaded: LoadedPolicy, progress: Progress,
                   *, build: bool = True) -> dict[str, Any]:
    """role → (ModelSource, ModelIdentity) for the candidate and the reference (if any)."""
    from certify.models.source import check_safety, identity, resolve

    specs = {"candidate": (opts.model, opts.revision)}
    reference = opts.reference or loaded.policy.reference
    if reference:
        specs["reference"] = (reference, opts.reference_revision)
    out = {}
    for role, (spec, revision) in specs.items():
        if spec.startswith("builtin:") and build:
            progress.message(f"preparing {spec} (built locally on first use, about a minute)")
        source = resolve(spec, revision=revision, build=build)
        # Refuse pickle, custom code and truncated weights before any run directory exists.
        check_safety(source, allow_pickle=opts.allow_pickle,
                     trust_remote_code=opts.trust_remote_code)
        out[role] = (source, identity(source))
    return out


def _dataset_refs(params: Any) -> list[Any]:
    from certify.data.load import DatasetRef

    refs = []
    for value in (params.__dict__.values() if hasattr(params, "__dict__") else []):
        if isinstance(value, DatasetRef):
            refs.append(value)
    return refs


def preflight(loaded: LoadedPolicy) -> list[dict[str, Any]]:
    """Load every dataset the policy names (so bad data fails before training)."""
    from certify import registry
    from certify.data.load import load_dataset

    seen: dict[str, dict[str, Any]] = {}
    policy = loaded.policy
    for entry in policy.evaluations.values():
        spec = registry.get("eval", entry.eval)
        for ref in _dataset_refs(spec.params.model_validate(entry.params)):
            seen.setdefault(ref.label, load_dataset(ref).identity())
    for attack in policy.attacks:
        spec = registry.get("attack", attack.attack)
        first = {k: (v[0] if isinstance(v, list) else v) for k, v in attack.budget.items()}
        for ref in _dataset_refs(spec.params.model_validate({**attack.params, **first})):
            dataset = load_dataset(ref)
            dataset.require("prompt", "response")  # attacks train on (prompt, response) pairs
            seen.setdefault(ref.label, dataset.identity())
    return list(seen.values())


def _manifest(loaded: LoadedPolicy, models: dict[str, Any], plan: Plan,
              opts: AuditOptions) -> dict[str, Any]:
    return {
        "run_id": str(uuid.uuid4()),
        "created": environment_now(),
        "policy": {"id": loaded.policy.id, "source": loaded.source,
                   "files": [f.__dict__ for f in loaded.files]},
        "models": {role: {"spec": src.spec, "root_digest": ident.root_digest}
                   for role, (src, ident) in models.items()},
        "versions": environment.drift_versions(),
        # Numerics: resuming with other settings would mix numbers from two setups.
        "numerics": {"device": opts.device, "dtype": opts.dtype, "autocast": opts.autocast,
                     "fsdp": opts.fsdp},
        "plan": plan.summary(),
    }


def environment_now() -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def worker_setup(loaded: LoadedPolicy, models: dict[str, Any], opts: AuditOptions) -> Any:
    from certify.run.worker import WorkerSetup

    return WorkerSetup(
        policy=loaded.effective,
        models={role: {"source": {"spec": s.spec, "kind": s.kind, "path": str(s.path),
                                  "revision": s.revision},
                       "identity": i.__dict__} for role, (s, i) in models.items()},
        device=opts.device, dtype=opts.dtype, autocast=opts.autocast,
        trust_remote_code=opts.trust_remote_code, allow_pickle=opts.allow_pickle,
        gradient_checkpointing=opts.gradient_checkpointing)


def audit(opts: AuditOptions, progress: Progress | None = None) -> RunResult:
    """Run (or resume) an audit and write its evidence. Raises CertifyError subclasses."""
    from certify.run.collect import RunResult, collect
    from certify.run.device import check as check_device
    from certify.run.executor import execute

    progress = progress or NullProgress()
    loaded = load_policy(opts.policy, opts.overlays)
    from certify.report import parse_formats

    parse_formats(opts.formats)  # a typo in --format fails now, not after the run
    if opts.key is not None:
        from certify.attest.keys import load_signer

        load_signer(Path(opts.key))  # a missing or unusable key fails now, not after the run
    check_device(opts)  # a missing GPU or Ray fails before anything is built or run
    datasets = preflight(loaded)  # bad data fails before any model is built or loaded
    models = resolve_models(opts, loaded, progress)
    plan = make_plan(loaded.policy, {r: i.root_digest for r, (_, i) in models.items()})
    out = opts.out or default_out(loaded.policy.id, opts.model)
    run_dir = RunDir(out)
    with run_dir.lock(), storage_errors(run_dir.path):
        resumed = run_dir.open(_manifest(loaded, models, plan, opts), allow_drift=opts.allow_drift)
        if resumed:
            progress.message(f"resuming {out}")
        cells = plan.cells
        if opts.shard is not None:
            index, count = opts.shard
            if not 0 <= index < count:
                raise UsageError(f"--shard {index}/{count}: index must be in 0..{count - 1}")
            cells = [c for i, c in enumerate(cells) if i % count == index]
        execute(cells, run_dir, worker_setup(loaded, models, opts), opts, progress)
        evidence = collect(run_dir, loaded, models, plan, datasets, opts)
        outputs = finish(run_dir, evidence, opts, progress)
    return RunResult(run_dir.path, evidence, outputs)


def finish(run_dir: RunDir, evidence: Evidence, opts: AuditOptions,
           progress: Progress) -> dict[str, Path]:
    """Write evidence.json, then the rendered views and the attestation when available."""
    evidence.write(run_dir.path / "evidence.json")
    outputs = {"evidence": run_dir.path / "evidence.json"}
    from certify.report import render_all

    if opts.key is not None:
        from certify.attest import prepare_signer

        prepare_signer(run_dir.path, opts.key)  # so the report's cover names the signer
    outputs.update(render_all(run_dir.path, opts.formats, progress=progress))
    if opts.key is not None:
        from certify.attest import sign_run

        outputs["attestation"] = sign_run(run_dir.path, opts.key)
    return outputs
