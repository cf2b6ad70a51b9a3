"""The `certify` command line. Each command parses options, calls one library function,
prints. Commands are imported only when invoked, so `certify --help` imports no torch.

Exit codes (mapped here and only here):
  0   audit complete, every required check passed (verify: every step passed)
  1   audit complete, the gate failed or is inconclusive
  2   usage, policy or input error (nothing was run)
  3   run incomplete or errored; never PASS on missing data
  4   verification failed
  5   dry run: the plan is infeasible on this machine (does not fit, or would take too
      long); nothing was run
  130 interrupted; the run directory resumes
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import Any

import click

from certify import __version__
from certify.errors import CertifyError, exit_code_for

DRY_RUN_INFEASIBLE = 5
"""``audit --dry-run`` printed "Feasible on this machine: NO": a CI step can gate on it
before it spends hours. Not an error (the plan was computed); distinct from 2 so a broken
policy and a plan too big for this machine read apart."""

COMMANDS = {
    "audit": ("certify.cli.audit", "audit", "Audit a model's resistance to harmful fine-tuning."),
    "verify": ("certify.cli.evidence", "verify", "Verify a signed run directory offline."),
    "render": ("certify.cli.evidence", "render", "Rebuild reports from a run's evidence."),
    "sign": ("certify.cli.evidence", "sign", "Sign an existing run directory."),
    "keygen": ("certify.cli.evidence", "keygen", "Write a signing key pair."),
    "merge": ("certify.cli.audit", "merge", "Merge sharded run directories into one."),
    "policy": ("certify.cli.policy", "policy", "Validate, list, show and describe policies."),
    "list": ("certify.cli.plugins", "list_plugins", "List attacks, judges or evals."),
    "digest": ("certify.cli.plugins", "digest", "Print a model's root digest."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        try:
            command: click.Command = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError):
            return None
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]},
             epilog="Exit codes: 0 pass · 1 fail/inconclusive · 2 usage/policy/input error · "
                    "3 incomplete or errored run · 4 verification failed · "
                    "5 dry run infeasible here · 130 interrupted.")
@click.version_option(__version__, prog_name="certify")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """certify: audit a language model's resistance to harmful fine-tuning."""
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not any(a in ("-v", "-vv", "--verbose") for a in (argv or sys.argv[1:])):
        # transformers, datasets and lm-eval draw their own progress bars; certify has one.
        os.environ.setdefault("TQDM_DISABLE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        rc = cli.main(args=argv, prog_name="certify", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(2 if isinstance(e, click.UsageError) else e.exit_code)
    except CertifyError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as e:  # a bug: report it, never exit 0 or 1
        logging.getLogger("certify").debug("unexpected error", exc_info=True)
        click.echo(f"internal error: {type(e).__name__}: {e} (run with -vv for the traceback)",
                   err=True)
        sys.exit(exit_code_for(e))
    sys.exit(rc if isinstance(rc, int) else 0)


def echo_json(data: Any) -> None:
    import json

    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
