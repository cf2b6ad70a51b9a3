"""The audit, stage by stage: policy → plan → execute → collect → assess → render → sign.

Each stage takes the previous stage's typed output and none calls back into an
earlier one. ``merge`` enters the same pipeline at collect, ``render_run`` and
``sign_run`` at its last two stages.
"""

from __future__ import annotations

from pathlib import Path

from certify import stopping
from certify._io import atomic_write_bytes
from certify.assess import assess, fragile_limitations, scope_sentence
from certify.attest import report_is_stale, sign, signed_by, signer_identity
from certify.conductor.collect import collect, inputs_of, merge_options, plan_of, policy_of
from certify.conductor.options import AuditOptions, RunResult, default_out
from certify.conductor.preflight import (
    asks_cost_model,
    check_disk_space,
    cost_preview,
    expect_times,
    keep_cell_state,
    manifest,
    preflight,
    worker_setup,
)
from certify.evidence import Evidence
from certify.plan import make_plan
from certify.policy.load import load_policy
from certify.policy.schema import Policy
from certify.report import load_evidence, parse_formats, render
from certify.run import shards as shard_dirs
from certify.run.executor import Executor, execute
from certify.run.progress import NullProgress, Progress
from certify.run.rundir import RunDir, storage_errors


def audit(opts: AuditOptions, progress: Progress | None = None) -> RunResult:
    """Run (or resume) an audit and write its evidence. Raises CertifyError subclasses;
    SIGINT and SIGTERM stop it at the next safe point (``Interrupted``, certify.stopping)."""
    with stopping.on_signals():
        return _audit(opts, progress or NullProgress())


def _audit(opts: AuditOptions, progress: Progress) -> RunResult:
    loaded = load_policy(opts.policy, opts.overlays)                          # policy
    run_dir = RunDir(opts.out or default_out(loaded.policy.id, opts.model))
    preview = cost_preview(opts) if asks_cost_model(opts) else None  # state, disk, ETA
    keep_state = keep_cell_state(opts, preview)
    check_disk_space(opts, run_dir.path, keep_state)  # before hours of hashing and training
    inputs = preflight(opts, loaded, progress)   # every check that can run before training
    plan = make_plan(loaded.policy, inputs.digests)                           # plan
    with run_dir.lock(), storage_errors(run_dir.path):
        if run_dir.open(manifest(loaded, inputs, plan, opts), allow_drift=opts.allow_drift):
            progress.message(f"resuming {run_dir.path}")
        index, count = opts.shard or (0, 1)
        cells = plan.cells[index::count]
        expect_times(preview, plan.cells, cells, run_dir, progress)  # → the ETA
        setup = worker_setup(loaded, inputs, opts, keep_state)
        execute(cells, run_dir, setup,                                            # execute
                Executor(opts.executor, opts.fsdp, opts.ray_address), progress)
        evidence = collect(run_dir, loaded, inputs.models, plan, inputs.datasets, opts)  # collect
        return conclude(run_dir, evidence, loaded.policy, opts.formats, opts.key,
                        inputs.signer, progress)


def conclude(run_dir: RunDir, evidence: Evidence, policy: Policy, formats: tuple[str, ...],
             key: Path | None, signer: str | None, progress: Progress) -> RunResult:
    """Assess, write evidence.json, render the views, sign (when given a key)."""
    evidence.verdict = assess(evidence, policy)                                # assess
    evidence.limitations += [x for x in fragile_limitations(evidence.verdict, policy)
                             if x not in evidence.limitations]
    evidence.scope = scope_sentence(policy, evidence.verdict.overall)
    data = evidence.to_bytes()
    atomic_write_bytes(run_dir.path / "evidence.json", data)
    written = Evidence.model_validate_json(data)  # the views show exactly what was written
    outputs = {"evidence": run_dir.path / "evidence.json"}
    # A report.pdf left by an earlier attempt of this run (a resume asked for fewer formats)
    # embeds the old evidence: it would mislead a reader and, signed, never verify.
    stale = ("pdf",) if "pdf" not in formats and report_is_stale(run_dir.path, data) else ()
    outputs.update(render(run_dir.path, written, data, policy, formats + stale,   # render
                          signer=signer, progress=progress))
    if key is not None:
        outputs["attestation"] = sign(run_dir.path, key)                      # sign
    return RunResult(run_dir.path, evidence, outputs)


def merge(dirs: list[Path], out: Path, formats: tuple[str, ...] | None = None) -> RunResult:
    """Merge shard run directories of one audit into ``out``: collect → assess → render."""
    if formats is not None:
        parse_formats(formats)  # a typo in --format fails before anything is written
    shards = shard_dirs.read_shards(dirs)
    run_dir = shard_dirs.out_dir(shards, out)
    loaded, models = inputs_of(shards.first)
    plan = plan_of(loaded, models, shards.planned)
    opts = merge_options(shards.first, [str(s.evidence.run.get("executor"))
                                        for s in shards.shards],
                         "certify merge " + " ".join(str(d) for d in dirs) + f" --out {out}")
    datasets = [d for s in shards.shards for d in s.evidence.datasets]
    with run_dir.lock():
        shard_dirs.combine(shards, run_dir)
        evidence = collect(run_dir, loaded, models, plan, datasets, opts)
        evidence.environment = {**shard_dirs.merged_environment(shards.shards),
                                "numerics": evidence.environment.get("numerics", {})}
        evidence.run["merged_from"] = run_dir.manifest()["merged_from"]
        return conclude(run_dir, evidence, loaded.policy,
                        opts.formats if formats is None else formats, None, None, NullProgress())


def render_run(run_dir: Path, formats: tuple[str, ...]) -> dict[str, Path]:
    """Render the views of a finished run again (its cover names its last signer)."""
    evidence, data = load_evidence(run_dir)
    return render(Path(run_dir), evidence, data, policy_of(evidence), formats,
                  signer=signed_by(run_dir))


def sign_run(run_dir: Path, key: Path, progress: Progress | None = None) -> Path:
    """Sign a finished run with ``key``. Its report and HTML view are rendered again first
    when their cover names another signer or the PDF embeds other evidence."""
    run_dir = Path(run_dir)
    signer = signer_identity(key)
    views = tuple(fmt for fmt in ("pdf", "html") if (run_dir / f"report.{fmt}").is_file())
    if views and (run_dir / "evidence.json").is_file():
        evidence, data = load_evidence(run_dir)
        if signed_by(run_dir) != signer or report_is_stale(run_dir, data):
            render(run_dir, evidence, data, policy_of(evidence), views, signer=signer,
                   progress=progress)
    return sign(run_dir, key)
