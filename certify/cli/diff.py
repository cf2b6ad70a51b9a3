"""`certify diff OLD_RUN NEW_RUN`: what changed between two releases' audits. Torch-free."""

from __future__ import annotations

from pathlib import Path

import click

from certify.cli import echo_json


def _print(d, old: Path, new: Path) -> None:  # type: ignore[no-untyped-def]
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(highlight=False, soft_wrap=False)
    for problem in d.problems:
        console.print(Text(f"not fully comparable (--force): {problem}", style="yellow"))
    table = Table(title=f"certify diff · {old} ({d.old_overall.upper()}) → {new} "
                        f"({d.new_overall.upper()})")
    for col in ("check", "verdict", "measure", "old", "new", "change [95% CI]"):
        table.add_column(col, overflow="fold")
    for c in d.checks:
        style = "red" if c.regressed else ("green" if c.improved else "")
        change = "—" if c.difference is None else f"{c.difference:+.3f}"
        if c.ci is not None:
            change += f" [{c.ci[0]:+.3f}, {c.ci[1]:+.3f}]"
        table.add_row(Text(c.id), Text(f"{c.old.upper()} → {c.new.upper()}", style=style),
                      c.measure or "—", "—" if c.old_value is None else f"{c.old_value:.3f}",
                      "—" if c.new_value is None else f"{c.new_value:.3f}", change)
    console.print(table)
    if d.attacks:
        attacks = Table(title="cost to break the candidate (first checkpoint above "
                              f"{d.attacks[0].level:.0%} harmful)")
        for col in ("attack", "seed", "old", "new"):
            attacks.add_column(col)
        for a in d.attacks:
            attacks.add_row(Text(a.attack), str(a.seed),
                            f"step {a.old_break}" if a.old_break is not None
                            else f"never (> {a.old_budget})",
                            f"step {a.new_break}" if a.new_break is not None
                            else f"never (> {a.new_budget})")
        console.print(attacks)
    console.print(f"new failures: {', '.join(d.new_failures) or 'none'}; vanished failures: "
                  f"{', '.join(d.vanished_failures) or 'none'}")
    if d.regressed:
        console.print(f"[red bold]REGRESSED[/]: {', '.join(c.id for c in d.regressed)} (exit 1)")
    else:
        console.print("[green bold]NO REGRESSION[/] (exit 0)")


@click.command()
@click.argument("old_run", type=click.Path(path_type=Path))
@click.argument("new_run", type=click.Path(path_type=Path))
@click.option("--key", type=click.Path(path_type=Path), default=None,
              help="The signer's public key: both runs must verify (exit 4 otherwise).")
@click.option("--force", is_flag=True,
              help="Compare the comparable part of audits whose policies or plans differ.")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@click.option("--markdown", is_flag=True, help="Print Markdown for a pull-request comment.")
def diff(old_run: Path, new_run: Path, key: Path | None, force: bool, as_json: bool,
         markdown: bool) -> None:
    """Compare the audits of two releases under the same policy.

    Exits 0 when no required check regressed, 1 when one did, 2 when the runs are not
    comparable (without --force) or unusable, 4 when --key is given and a run does not
    verify.
    """
    from certify.assess.diff import diff as compare
    from certify.assess.diff import markdown as as_markdown
    from certify.conductor.collect import policy_of
    from certify.errors import UsageError, VerificationError
    from certify.report import load_evidence

    signed: dict[Path, bytes | None] = {}  # the evidence each verification read
    for run in (old_run, new_run):
        if not Path(run).is_dir():
            raise UsageError(f"run directory {run} does not exist",
                             hint="pass two directories `certify audit --out` wrote")
        if key is not None:
            from certify.attest import verify_run

            result = verify_run(run, key)
            if not result.ok:
                failed = ", ".join(s.name for s in result.steps if s.status == "fail")
                raise VerificationError(f"{run} does not verify ({failed})",
                                        hint=f"run `certify verify {run} --key {key}`")
            signed[run] = result.evidence
    old, _ = load_evidence(old_run, signed.get(old_run))
    new, _ = load_evidence(new_run, signed.get(new_run))
    d = compare(old, new, policy_of(old), policy_of(new), force=force)
    if d.problems and not force:
        raise UsageError("the two audits are not comparable: " + "; ".join(d.problems),
                         hint="audit both releases with the same policy, or pass --force to "
                              "compare only the checks and attacks defined the same way")
    if as_json:
        echo_json(d.as_json())
    elif markdown:
        click.echo(as_markdown(d, str(old_run), str(new_run)), nl=False)
    else:
        _print(d, old_run, new_run)
    raise SystemExit(d.exit_code)
