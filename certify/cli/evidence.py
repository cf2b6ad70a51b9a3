"""`certify verify`, `certify render`, `certify sign`, `certify keygen`.

Torch-free: these run on an auditor's laptop. ``verify`` and ``sign`` need only
securesystemslib and pikepdf; ``render`` (and ``sign``, which renders the report again
when its cover names another signer) also needs WeasyPrint.
"""

from __future__ import annotations

from pathlib import Path

import click

from certify.cli import echo_json

STATUS_STYLE = {"pass": ("PASS", "green"), "fail": ("FAIL", "red"), "skip": ("skip", "dim")}


def _print_steps(verification) -> None:  # type: ignore[no-untyped-def]
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(highlight=False, soft_wrap=False)
    table = Table(title=f"certify verify · {verification.run_dir}")
    table.add_column("step")
    table.add_column("result")
    table.add_column("detail", overflow="fold")
    for step in verification.steps:
        word, color = STATUS_STYLE[step.status]
        # Details quote names from the run directory: Text() keeps them from being markup.
        table.add_row(step.name, Text(word, style=color), Text(step.detail))
    console.print(table)
    if verification.ok:
        console.print("[green bold]VERIFIED[/]: every step passed (exit 0)")
    else:
        failed = [s.name for s in verification.steps if s.status == "fail"]
        console.print(f"[red bold]NOT VERIFIED[/]: {len(failed)} step(s) failed: "
                      f"{', '.join(failed)} (exit 4)")


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--key", "key", type=click.Path(path_type=Path), default=None,
              help="The signer's public key (PEM), obtained from the signer. Required to pass.")
@click.option("--model", default=None, help="Re-hash this model (directory, .gguf, hub id, "
              "builtin:NAME) and compare with the signed digest.")
@click.option("--policy", default=None, help="Compare this policy file's digest with the signed "
              "one (a path, or a shipped policy name).")
@click.option("--json", "as_json", is_flag=True, help="Print the steps as JSON.")
def verify(run_dir: Path, key: Path | None, model: str | None, policy: str | None,
           as_json: bool) -> None:
    """Verify RUN_DIR offline: signature, subjects, embedded evidence, model, policy.

    Exits 0 when every step passes, 4 when any fails.
    """
    from certify.attest.verify import verify_run

    result = verify_run(run_dir, key, model=model, policy=policy)
    if as_json:
        echo_json({"ok": result.ok, "run_dir": str(run_dir),
                   "steps": [s.__dict__ for s in result.steps]})
    else:
        _print_steps(result)
    raise SystemExit(0 if result.ok else 4)


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--format", "formats", default="pdf,html,junit,md", show_default=True,
              help="Comma-separated views to write: pdf, html, junit, md.")
def render(run_dir: Path, formats: str) -> None:
    """Rebuild the reports of RUN_DIR from its evidence.json (runs no model)."""
    from certify.conductor import render_run

    outputs = render_run(run_dir, tuple(formats.split(",")))
    for name, path in outputs.items():
        click.echo(f"{name}: {path}")


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--key", "key", required=True, type=click.Path(path_type=Path),
              help="Private key (PEM, from `certify keygen`).")
def sign(run_dir: Path, key: Path) -> None:
    """Sign RUN_DIR: write certify.intoto.jsonl (in-toto Statement in a DSSE envelope)."""
    from certify.conductor import sign_run

    out = sign_run(run_dir, key)
    click.echo(f"signed: {out}")
    click.echo(f"verify with: certify verify {run_dir} --key PUBLIC_KEY.pub")


@click.command()
@click.option("--out", "out", required=True, type=click.Path(path_type=Path),
              help="Directory for certify.key (mode 0600) and certify.pub.")
@click.option("--type", "key_type", type=click.Choice(["ed25519", "ecdsa-p256"]),
              default="ed25519", show_default=True)
def keygen(out: Path, key_type: str) -> None:
    """Write a signing key pair: certify.key (private, 0600) and certify.pub."""
    from certify.attest import keygen as make_keys
    from certify.attest.keys import describe, load_public_key

    private, public = make_keys(out, key_type)  # type: ignore[arg-type]
    click.echo(f"private key: {private} (keep it secret; mode 0600)")
    click.echo(f"public key:  {public} (give it to auditors)")
    click.echo(f"signer:      {describe(load_public_key(public))} (reports name this keyid)")
