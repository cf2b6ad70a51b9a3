"""`certify policy validate | list | show | schema | init`."""

from __future__ import annotations

from pathlib import Path

import click

from certify.cli import echo_json

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


@click.group()
def policy() -> None:
    """Validate, list, show and describe policies."""


@policy.command()
@click.argument("files", nargs=-1, required=True)
@click.option("--overlay", "overlays", multiple=True,
              help="Overlay applied on top of each file before validating (repeatable).")
def validate(files: tuple[str, ...], overlays: tuple[str, ...]) -> None:
    """Validate policy files (or shipped policy names); report every problem at once."""
    from certify.policy.load import validate_files

    failed = 0
    for path, error in validate_files(list(files), overlays):
        if error is None:
            click.echo(f"ok    {path}")
        else:
            failed += 1
            click.echo(f"FAIL  {path}\n{error}", err=True)
    if failed:
        raise SystemExit(2)


@policy.command("list")
def list_policies() -> None:
    """List the policies and overlays shipped with certify."""
    from certify.policy.load import load_policy, shipped_names, shipped_overlays

    for name in shipped_names():
        p = load_policy(name).policy
        label = "" if p.meta.evidentiary else "  [non-evidentiary]"
        click.echo(f"{name:<16} {p.title}{label}")
    overlays = shipped_overlays()
    if overlays:
        click.echo(f"\noverlays (--overlay NAME): {', '.join(overlays)}")


@policy.command()
@click.argument("name")
@click.option("--effective", is_flag=True,
              help="Print the merged policy (extends and overlays applied) instead of the file.")
@click.option("--overlay", "overlays", multiple=True, help="Overlay to apply (with --effective).")
def show(name: str, effective: bool, overlays: tuple[str, ...]) -> None:
    """Print a policy file (shipped name or path) exactly as stored, or its effective policy."""
    from certify.policy.load import load_policy, resolve

    if not effective:
        if overlays:
            raise click.UsageError("--overlay needs --effective")
        path, _ = resolve(name)
        click.echo(path.read_text(encoding="utf-8"), nl=False)
        return
    import yaml

    loaded = load_policy(name, overlays)
    click.echo("# Effective policy: every file below merged in order (sha256 of its bytes).")
    for f in loaded.files:
        click.echo(f"#   {f.role:<8} {f.source}  sha256:{f.sha256}")
    click.echo(yaml.safe_dump(loaded.effective, sort_keys=False, allow_unicode=True,
                              width=100), nl=False)


@policy.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--extends", "base", default="ci-smoke", show_default=True,
              help="The shipped policy (or policy file) the new one extends.")
def init(file: Path, base: str) -> None:
    """Write FILE: a starter policy that extends a shipped one, its entries as comments."""
    from certify.policy.starter import write_starter

    path = write_starter(file, base)
    click.echo(f"wrote {path} (extends {base}); edit it, then "
               f"`certify policy validate {path}`")


@policy.command()
def schema() -> None:
    """Print the policy JSON Schema (for editor validation)."""
    from certify.policy.schema import Policy

    doc = Policy.model_json_schema()
    echo_json({"$schema": JSON_SCHEMA_DIALECT, **doc})
