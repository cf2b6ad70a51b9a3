"""`certify policy validate | list | show | schema`."""

from __future__ import annotations

import click

from certify.cli import echo_json


@click.group()
def policy() -> None:
    """Validate, list, show and describe policies."""


@policy.command()
@click.argument("files", nargs=-1, required=True)
def validate(files: tuple[str, ...]) -> None:
    """Validate policy files (or shipped policy names); report every problem at once."""
    from certify.policy.load import validate_files

    failed = 0
    for path, error in validate_files(list(files)):
        if error is None:
            click.echo(f"ok    {path}")
        else:
            failed += 1
            click.echo(f"FAIL  {path}\n{error}", err=True)
    if failed:
        raise SystemExit(2)


@policy.command("list")
def list_policies() -> None:
    """List the policies shipped with certify."""
    from certify.policy.load import load_policy, shipped_names

    for name in shipped_names():
        p = load_policy(name).policy
        label = "" if p.meta.evidentiary else "  [non-evidentiary]"
        click.echo(f"{name:<16} {p.title}{label}")


@policy.command()
@click.argument("name")
def show(name: str) -> None:
    """Print a policy file (shipped name or path) exactly as stored."""
    from certify.policy.load import resolve

    path, _ = resolve(name)
    click.echo(path.read_text(encoding="utf-8"), nl=False)


@policy.command()
def schema() -> None:
    """Print the policy JSON Schema (for editor validation)."""
    from certify.policy.schema import Policy

    echo_json(Policy.model_json_schema())
