"""Everything an audit can check before any training, and the inputs it hands on.

The conductor loads the policy; here are the other checks, all before a run directory
exists: report formats, the signing key, the shard, the device (and Ray), every
dataset the policy names, every judge model its evaluations name (on disk or in the
Hugging Face cache), and the models (resolved, refused when unsafe, hashed).
:class:`Inputs` is what the plan, the run directory's manifest, the workers and the
evidence are made from.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from certify import environment, registry
from certify._io import utc_now
from certify.conductor.options import AuditOptions
from certify.data.load import DatasetRef, load_dataset
from certify.errors import CertifyError, ModelError, UsageError
from certify.models.source import ModelIdentity, ModelSource, check_safety, identity, resolve
from certify.plan import Plan
from certify.policy.load import LoadedPolicy
from certify.run.progress import Progress
from certify.run.worker import WorkerSetup

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Inputs:
    """What the checks found: the models, the datasets' identities, the signer."""

    models: dict[str, tuple[ModelSource, ModelIdentity]]
    """role → where its files are, and its identity (digests)."""
    datasets: list[dict[str, Any]]
    signer: str | None
    """The signing key's identity, when the run is to be signed."""

    @property
    def digests(self) -> dict[str, str | None]:
        return {role: ident.root_digest for role, (_, ident) in self.models.items()}


def preflight(opts: AuditOptions, loaded: LoadedPolicy, progress: Progress) -> Inputs:
    """Check everything that can be checked before training; raise the first problem."""
    from certify.attest import signer_identity
    from certify.report import parse_formats
    from certify.run.device import check as check_device

    parse_formats(opts.formats)  # a typo in --format fails now, not after the run
    # A missing or unusable key fails now, not after the run.
    signer = signer_identity(opts.key) if opts.key is not None else None
    if opts.shard is not None and not 0 <= opts.shard[0] < opts.shard[1]:
        raise UsageError(f"--shard {opts.shard[0]}/{opts.shard[1]}: index must be in "
                         f"0..{opts.shard[1] - 1}")
    # A missing GPU or Ray fails before anything is built or run.
    check_device(opts.executor, opts.fsdp, opts.device, opts.dtype, opts.autocast)
    datasets = dataset_identities(loaded)  # bad data fails before any model is built or loaded
    check_judge_models(loaded)  # a missing judge fails now, not in every cell after training
    # e.g. an unknown lm-eval task, or WMDP's questions not in the HF cache: now, not
    # after training
    check_eval_inputs(loaded, data=True)
    models = resolve_models(opts, loaded, progress)
    check_attack_models(loaded, {role: str(src.path) for role, (src, _) in models.items()})
    return Inputs(models, datasets, signer)


def resolve_models(opts: AuditOptions, loaded: LoadedPolicy, progress: Progress,
                   *, build: bool = True) -> dict[str, tuple[ModelSource, ModelIdentity]]:
    """role → (ModelSource, ModelIdentity) for the candidate and the reference (if any)."""
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


def check_judge_models(loaded: LoadedPolicy) -> None:
    """Every model a judge of the policy's evaluations loads (its weights, its tokenizer)
    can be found. A missing one is an input error naming the judge, the evaluation and
    the command that fetches it; without this check each cell would fail after training."""
    for eval_id, entry in loaded.policy.evaluations.items():
        params = registry.get("eval", entry.eval).params.model_validate(entry.params)
        for kind, name, judge_params, _ in getattr(params, "plugin_refs", list)():
            if kind != "judge":
                continue
            judge = registry.get("judge", name).params.model_validate(judge_params)
            for field in ("model", "tokenizer"):
                spec = getattr(judge, field, None)
                if not isinstance(spec, str) or not spec:
                    continue
                revision = getattr(judge, "revision", None) if field == "model" else None
                try:
                    resolve(spec, revision=revision, build=False)
                except ModelError as e:
                    raise ModelError(f"judge {name!r} of evaluation {eval_id!r}: its {field} "
                                     f"cannot be found: {e.message}", hint=e.hint) from None


def check_eval_inputs(loaded: LoadedPolicy, *, data: bool = False) -> None:
    """Each evaluation plug-in's own input check (``check_inputs`` at registration), such as
    a knowledge evaluation's tasks existing and being multiple choice; with ``data``, also
    its data check (``check_data``: the lm-eval tasks' datasets load). The dry run checks
    without data: it reads no dataset."""
    hooks = ("check_inputs", "check_data") if data else ("check_inputs",)
    for eval_id, entry in loaded.policy.evaluations.items():
        spec = registry.get("eval", entry.eval)
        params = spec.params.model_validate(entry.params)
        for hook in hooks:
            check = spec.extra.get(hook)
            if check is not None:
                check(params, eval_id)


def check_attack_models(loaded: LoadedPolicy, models: dict[str, str]) -> None:
    """Each attack's own check against the shape of the models it runs on (``check_model``
    at registration), such as refusal_ablation's layers existing. Reads the models'
    configs, never their weights, so the dry run calls it too."""
    from certify.cost.shape import model_shape
    from certify.policy.load import _budget_points

    hooked = [(entry, spec) for entry in loaded.policy.attacks
              if (spec := registry.get("attack", entry.attack)).extra.get("check_model")]
    layers: dict[str, int] = {}
    for entry, spec in hooked:
        for role, model in models.items():
            if role not in entry.models:
                continue
            if model not in layers:
                layers[model] = model_shape(model).layers
            for point in _budget_points(entry.budget):
                params = spec.params.model_validate({**entry.params, **point})
                spec.extra["check_model"](params, entry.id, layers[model])


def _dataset_refs(params: Any) -> list[DatasetRef]:
    values = params.__dict__.values() if hasattr(params, "__dict__") else []
    return [value for value in values if isinstance(value, DatasetRef)]


def dataset_identities(loaded: LoadedPolicy) -> list[dict[str, Any]]:
    """Load every dataset the policy names (so bad data fails before training)."""
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
            # Attacks train on (prompt, response) pairs unless they declare other fields
            # (relearning trains on documents: the response alone).
            dataset.require(*spec.extra.get("data_fields", ("prompt", "response")))
            seen.setdefault(ref.label, dataset.identity())
    return list(seen.values())


def manifest(loaded: LoadedPolicy, inputs: Inputs, plan: Plan,
             opts: AuditOptions) -> dict[str, Any]:
    """What the run directory is for: resuming refuses another audit's directory."""
    return {
        "run_id": str(uuid.uuid4()),
        "created": utc_now(),
        "policy": {"id": loaded.policy.id, "source": loaded.source,
                   "files": [f.__dict__ for f in loaded.files]},
        "models": {role: {"spec": src.spec, "root_digest": ident.root_digest}
                   for role, (src, ident) in inputs.models.items()},
        "versions": environment.drift_versions(),
        # Numerics: resuming with other settings would mix numbers from two setups.
        "numerics": {"device": opts.device, "dtype": opts.dtype, "autocast": opts.autocast,
                     "fsdp": opts.fsdp},
        "plan": plan.summary(),
    }


def on_disk(out: Path) -> Any:
    """What an earlier attempt left in the run directory ``out`` (certify.cost.disk.OnDisk:
    the digests it was planned under, its finished cells and kept cell states), or None
    when there is no run there yet."""
    from certify.cost.disk import OnDisk
    from certify.run.cell_state import kept_states
    from certify.run.rundir import RunDir

    run_dir = RunDir(out)
    if not run_dir.exists():
        return None
    try:
        models = run_dir.manifest().get("models") or {}
        digests = {role: m.get("root_digest") for role, m in models.items()
                   if isinstance(m, dict)}
    except (OSError, ValueError, AttributeError):
        return None  # an unreadable manifest is RunDir.open's to report
    return OnDisk(digests, frozenset(run_dir.finished()), kept_states(Path(out)))


def check_disk_space(opts: AuditOptions, out: Path, keep_state: bool) -> None:
    """Refuse (exit 2) an audit whose run directory the disk cannot hold: the kept cell
    state, the samples, the evidence and the reports (certify.cost.disk). On a resume,
    what the cells still to run need (the finished ones are on the disk already)."""
    from certify.cost.disk import audit_disk_need, check_disk

    try:
        need = audit_disk_need(opts, keep_state, on_disk(out))
    except Exception as e:  # an unreadable model or policy is preflight's to report
        log.info("disk need not estimated (%s)", e.message if isinstance(e, CertifyError)
                 else e)
        return
    check_disk(out, need)


def worker_setup(loaded: LoadedPolicy, inputs: Inputs, opts: AuditOptions,
                 keep_state: bool | None = None) -> WorkerSetup:
    """What every worker is given (plain data and the typed policy: Ray ships it)."""
    return WorkerSetup(
        policy=loaded.policy,
        models={role: {"source": {"spec": s.spec, "kind": s.kind, "path": str(s.path),
                                  "revision": s.revision},
                       "identity": i.__dict__} for role, (s, i) in inputs.models.items()},
        device=opts.device, dtype=opts.dtype, autocast=opts.autocast,
        trust_remote_code=opts.trust_remote_code, allow_pickle=opts.allow_pickle,
        gradient_checkpointing=opts.gradient_checkpointing,
        keep_cell_state=keep_cell_state(opts) if keep_state is None else keep_state)


def asks_cost_model(opts: AuditOptions) -> bool:
    """Whether the audit consults the cost model before running: ``--cell-state auto`` on
    the local executor (Ray cells keep no state: no need to ask)."""
    return opts.cell_state == "auto" and opts.executor == "local"


def cost_preview(opts: AuditOptions) -> Any:
    """The dry run's report for this audit (fitted constants, no calibration: an audit
    does not spend a minute timing the model), or None when the cost model cannot make
    one (the preview must never stop an audit)."""
    from certify.cost import dry_run

    try:
        return dry_run(opts, calibrate_here=False)
    except Exception as e:
        log.info("cost model unavailable (%s)", e.message if isinstance(e, CertifyError) else e)
        return None


def cell_seconds(preview: Any, plan_cells: list[Any]) -> dict[str, float]:
    """The cost model's seconds per cell of the plan. The dry run plans the same cells in
    the same order, but under placeholder digests (it hashes no model), so its cell ids
    differ: cells are matched by position, and only when role, attack and seed agree
    all along (otherwise no estimate is given)."""
    if preview is None:
        return {}
    rows = preview.as_json().get("cells", [])
    same = len(rows) == len(plan_cells) and all(
        (r.get("role"), r.get("attack_id"), r.get("seed")) == (c.role, c.attack_id, c.seed)
        for r, c in zip(rows, plan_cells, strict=False))
    if not same:
        log.info("cost model's cells do not line up with the plan; no ETA from it")
        return {}
    return {c.id: float(r["seconds"]) for r, c in zip(rows, plan_cells, strict=True)
            if isinstance(r.get("seconds"), int | float)}


def expect_times(preview: Any, plan_cells: list[Any], cells: list[Any], run_dir: Any,
                 progress: Progress) -> None:
    """Give the progress display the cost model's seconds for each of ``cells`` still to
    run, so the run's ETA starts from the estimate and is then corrected by measured
    cells."""
    seconds = cell_seconds(preview, plan_cells)
    if seconds:
        from certify.run.executor import pending

        progress.expect({c.id: seconds[c.id] for c in pending(cells, run_dir) if c.id in seconds})


def keep_cell_state(opts: AuditOptions, preview: Any = None) -> bool:
    """``--cell-state``; ``auto`` asks the cost model whether a cell runs for minutes
    (``preview``: its answer, when already asked)."""
    if opts.executor != "local":
        if opts.cell_state == "on":
            log.warning("--cell-state on has no effect with --executor %s: Ray actors may run "
                        "on other hosts than the run directory's, so their cells keep no "
                        "state and a killed cell restarts from step 0 (docs/reliability.md)",
                        opts.executor)
        return False
    if opts.cell_state != "auto":
        return opts.cell_state == "on"
    from certify.run.cell_state import SAVE_SECONDS

    preview = preview if preview is not None else cost_preview(opts)
    if preview is None:
        return True  # no estimate: keep state, to be safe
    rows = preview.rows
    return max((r.seconds / r.cells for r in rows if r.cells), default=0.0) > SAVE_SECONDS
