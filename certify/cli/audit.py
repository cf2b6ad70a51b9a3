"""`certify audit MODEL --policy POLICY` and `certify merge`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from certify.cli import DRY_RUN_INFEASIBLE, echo_json


def _shard(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        i, n = (int(x) for x in value.split("/"))
    except ValueError:
        raise click.BadParameter("use I/N, e.g. 0/4") from None
    if n < 1 or not 0 <= i < n:
        raise click.BadParameter(f"shard index must be in 0..{n - 1}")
    return i, n


@click.command()
@click.argument("model")
@click.option("--policy", "-p", required=True, help="Policy file, or a shipped name (sb1047).")
@click.option("--reference", "-r", default=None,
              help="Undefended reference model (positive control, denominator of ratios).")
@click.option("--out", "-o", type=click.Path(path_type=Path), default=None,
              help="Run directory [default: runs/POLICY--MODEL]. Re-running resumes it.")
@click.option("--resume", is_flag=True, help="Require an existing run directory and resume it.")
@click.option("--overlay", "overlays", multiple=True,
              help="YAML file overriding policy values (repeatable; hashed into the evidence).")
@click.option("--key", type=click.Path(path_type=Path), default=None,
              help="Private key: sign the run (see `certify keygen`).")
@click.option("--revision", default=None, help="Hub revision (commit) of MODEL.")
@click.option("--reference-revision", default=None, help="Hub revision of the reference.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True)
@click.option("--ray-address", default=None, help="Ray cluster address (default: start/attach).")
@click.option("--shard", default=None, help="Run only shard I of N cells (I/N); see merge.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--fsdp", type=click.IntRange(min=1), default=1, show_default=True, metavar="N",
              help="Shard each full fine-tuning cell over N processes (N GPUs with "
                   "--device cuda) with FSDP.")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), default="float32",
              show_default=True, help="Weight dtype when loading models.")
@click.option("--autocast", type=click.Choice(["bfloat16", "float16"]), default=None,
              help="Mixed-precision autocast for training (CUDA).")
@click.option("--gradient-checkpointing", is_flag=True, help="Trade compute for memory.")
@click.option("--trust-remote-code", is_flag=True, help="Allow a model's custom Python code.")
@click.option("--allow-pickle", is_flag=True, help="Allow pickle (.bin/.pt) weights.")
@click.option("--allow-drift", is_flag=True,
              help="Resume even though versions/digests changed (recorded in the evidence).")
@click.option("--format", "formats", default="pdf,html,junit,md", show_default=True,
              help="Reports to write at the end.")
@click.option("--cell-state", type=click.Choice(["auto", "on", "off"]), default="auto",
              show_default=True,
              help="Keep each cell's training state at its checkpoints so a killed cell "
                   "resumes there; auto: when the cost model estimates a cell over 3 min.")
@click.option("--dry-run", is_flag=True, help="Print the plan and its cost; run nothing.")
@click.option("--calibrate/--no-calibrate", default=True, show_default=True,
              help="--dry-run: time the model itself here and measure its answer lengths "
                   "(models up to 400M parameters on a CPU); off: fitted constants only.")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def audit(model: str, policy: str, reference: str | None, out: Path | None, resume: bool,
          overlays: tuple[str, ...], key: Path | None, revision: str | None,
          reference_revision: str | None, executor: str, ray_address: str | None,
          shard: str | None, device: str, fsdp: int, dtype: str, autocast: str | None,
          gradient_checkpointing: bool, trust_remote_code: bool, allow_pickle: bool,
          allow_drift: bool, formats: str, cell_state: str, dry_run: bool, calibrate: bool,
          as_json: bool, quiet: bool) -> None:
    """Audit MODEL against POLICY: attack it, measure, decide, and write evidence."""
    from certify.conductor import AuditOptions
    from certify.errors import UsageError
    from certify.run import progress as progress_mod

    opts = AuditOptions(
        model=model, policy=policy, reference=reference, out=out, overlays=overlays,
        revision=revision, reference_revision=reference_revision, executor=executor,
        ray_address=ray_address, shard=_shard(shard), device=device, fsdp=fsdp, dtype=dtype,
        autocast=autocast, gradient_checkpointing=gradient_checkpointing,
        trust_remote_code=trust_remote_code, allow_pickle=allow_pickle, allow_drift=allow_drift,
        key=key, formats=tuple(f for f in formats.split(",") if f), cell_state=cell_state,
        command="certify " + " ".join(sys.argv[1:]), calibrate=calibrate)
    if dry_run:
        from certify.conductor import preview

        report = preview(opts)
        echo_json(report.as_json()) if as_json else click.echo(report.text())
        raise SystemExit(0 if report.feasible else DRY_RUN_INFEASIBLE)
    if resume and (out is None or not (out / "run.json").is_file()):
        raise UsageError("--resume needs --out pointing at an existing run directory")
    from certify.conductor import audit as run_audit

    result = run_audit(opts, progress_mod.auto(quiet or as_json))
    from certify.cli.output import print_verdict, summary_json

    if as_json:
        echo_json(summary_json(result.evidence, result.run_dir, result.outputs))
    else:
        print_verdict(result.evidence, result.run_dir, result.outputs)
    raise SystemExit(result.exit_code)


@click.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path))
@click.option("--format", "formats", default="pdf,html,junit,md", show_default=True,
              help="Reports to write for the merged run.")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary.")
def merge(run_dirs: tuple[Path, ...], out: Path, formats: str, as_json: bool) -> None:
    """Merge the cell results of sharded run directories of one audit into OUT."""
    from certify.cli.output import print_verdict, summary_json
    from certify.conductor import merge as merge_dirs

    result = merge_dirs(list(run_dirs), out, tuple(f for f in formats.split(",") if f))
    if as_json:
        echo_json(summary_json(result.evidence, result.run_dir, result.outputs))
    else:
        print_verdict(result.evidence, result.run_dir, result.outputs)
    raise SystemExit(result.exit_code)
