"""`certify list attacks|judges|evals` and `certify digest MODEL`."""

from __future__ import annotations

import click

from certify.cli import echo_json


@click.command("list")
@click.argument("kind", type=click.Choice(["attacks", "judges", "evals"]))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable, with parameter schemas.")
def list_plugins(kind: str, as_json: bool) -> None:
    """List registered attacks, judges or evals with their summary, paper and parameters."""
    from certify import registry

    specs = registry.all_specs(kind[:-1])  # type: ignore[arg-type]
    if as_json:
        echo_json([s.describe() for s in specs])
        return
    for s in specs:
        click.echo(f"{s.name}  (v{s.version})  {s.summary}")
        if s.paper:
            click.echo(f"    paper: {s.paper}")
        fields = s.params.model_json_schema().get("properties", {})
        for name, field in fields.items():
            default = f" = {field['default']!r}" if "default" in field else ""
            click.echo(f"    {name}{default}")


@click.command()
@click.argument("model")
@click.option("--revision", default=None, help="Hub revision (commit) to hash.")
def digest(model: str, revision: str | None) -> None:
    """Print MODEL's root digest (OpenSSF model-signing compatible) and per-file sha256."""
    from certify.models.source import identity, resolve

    ident = identity(resolve(model, revision=revision))
    click.echo(f"sha256:{ident.root_digest}  {model}")
    for path, sha in sorted(ident.files.items()):
        click.echo(f"  {sha}  {path}")
