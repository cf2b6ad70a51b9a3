"""`certify replay RUN_DIR`: re-execute part of a signed audit and compare with its numbers."""

from __future__ import annotations

from pathlib import Path

import click

from certify.cli import echo_json


def _print(result) -> None:  # type: ignore[no-untyped-def]
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(highlight=False, soft_wrap=False)
    console.print(f"cells: {', '.join(result.choice.cells)} ({result.choice.how})")
    if not result.verified:
        console.print("[yellow]the signature was not checked (no --key): the numbers compared "
                      "are evidence.json's, which anyone could have edited[/]")
    tol = result.tolerance
    console.print(f"tolerance (the evidence's statistics.reproducibility): judged counts "
                  f"± max({tol['judged_min']}, {tol['judged_share']:.0%} of n) after training "
                  f"(capability counts ± max({tol['capability_min']}, "
                  f"{tol['capability_share']:.0%} of n)), "
                  f"± {tol['untrained_judged']} on the unmodified model, losses "
                  f"± {tol['loss_rel']:.0%}, break points ± {tol['break_checkpoints']} "
                  f"checkpoint(s)")
    table = Table(title=f"certify replay · {result.run_dir}")
    for col in ("cell", "compared", "largest move (count / loss / break)", "result"):
        table.add_column(col, overflow="fold")
    for cell in result.cells:
        counts = [r.moved for r in cell.rows if "/" in r.what]
        losses = [r.moved for r in cell.rows if r.what == "loss"]
        breaks = [r.moved for r in cell.rows if r.what.startswith("break@")]
        moved = (f"{max(counts, default=0):g} / {max(losses, default=0):.1e} / "
                 f"{max(breaks, default=0):g}")
        bad = cell.first_disagreement
        if cell.problem:
            verdict = Text(f"CANNOT COMPARE: {cell.problem}", style="red")
        elif bad is not None:
            verdict = Text(f"DISAGREES at step {bad.step}: {bad.what} signed {bad.signed}, "
                           f"replayed {bad.replayed} (allowed ± {bad.allowed:g})", style="red")
        else:
            verdict = Text("agrees", style="green")
        table.add_row(Text(cell.cell), str(len(cell.rows)), moved, verdict)
    console.print(table)
    for cell in result.cells:
        if not cell.agrees and cell.numerics_differ:
            console.print(Text(
                f"{cell.cell} ran here under other numerics than when signed "
                f"({'; '.join(cell.numerics_differ)}): unstable training can diverge "
                "honestly under other kernels (docs/reliability.md). Re-run with the signed "
                "cell's settings (evidence: cells[].numerics) to tell divergence from forgery.",
                style="yellow"))
    if result.statement:
        console.print(f"signed replay statement: {result.statement}")
    if result.agrees:
        console.print("[green bold]AGREES[/]: every replayed number is within tolerance (exit 0)")
    else:
        console.print("[red bold]CONTRADICTS THE SIGNED NUMBERS[/] (exit 4)")


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--key", type=click.Path(path_type=Path), default=None,
              help="The signer's public key: verify the run first (refused when it fails).")
@click.option("--cell", "cells", multiple=True,
              help="Replay this cell (repeatable); default: draw --k cells at random.")
@click.option("--k", "k", type=int, default=2, show_default=True,
              help="How many cells to draw, seeded by the attestation's digest.")
@click.option("--model", default=None, help="Where the audited candidate's files are here.")
@click.option("--reference", default=None, help="Where the audited reference's files are here.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--sign", "sign_key", type=click.Path(path_type=Path), default=None,
              help="Sign a replay statement with this private key.")
@click.option("--statement", type=click.Path(path_type=Path), default=None,
              help="Where to write it (default: RUN_DIR.certify.replay.intoto.jsonl beside it).")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def replay(run_dir: Path, key: Path | None, cells: tuple[str, ...], k: int, model: str | None,
           reference: str | None, device: str, sign_key: Path | None, statement: Path | None,
           as_json: bool, quiet: bool) -> None:
    """Re-run K cells of the audit in RUN_DIR and compare with its signed numbers.

    Exits 0 when every checkpoint agrees within the evidence's tolerance, 4 when a
    re-run contradicts the signed numbers (or the run does not verify against --key),
    3 when it could not run (e.g. the model's files are missing), 2 on usage errors.
    """
    from certify.conductor.replay import ReplayOptions
    from certify.conductor.replay import replay as run_replay
    from certify.run import progress as progress_mod

    models = {role: path for role, path in (("candidate", model), ("reference", reference))
              if path}
    result = run_replay(ReplayOptions(run_dir, key, cells, k, models, device, sign_key,
                                      statement), progress_mod.auto(quiet or as_json))
    if as_json:
        echo_json(result.as_json())
    else:
        _print(result)
    raise SystemExit(result.exit_code)
