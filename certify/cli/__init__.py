"""The `certify` command line. Each command parses options, calls one library function,
prints. Commands are imported only when invoked, so `certify --help` imports no torch.

Exit codes (mapped here and only here):
  0   audit complete, every required check passed (verify: every step passed;
      view: stopped with Ctrl-C)
  1   audit complete, the gate failed or is inconclusive
  2   usage, policy or input error (nothing was run)
  3   run incomplete or errored; never PASS on missing data
  4   verification failed
  5   dry run: the plan is infeasible on this machine (does not fit, or would take too
      long); nothing was run
  130 interrupted by SIGINT (Ctrl-C) or SIGTERM; the run directory resumes
      (the first signal stops at the next safe point, a second at once)
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import Any

import click

from certify import __version__
from certify.errors import CertifyError, Interrupted, exit_code_for

# Third-party progress bars (lm-eval's log-likelihood loop, transformers' shard writer)
# interleave with certify's own progress line and leak through --quiet; certify reports
# progress itself (the progress line, events.jsonl). tqdm reads this when first imported,
# so it is set before any command module loads; TQDM_DISABLE=0 brings the bars back.
os.environ.setdefault("TQDM_DISABLE", "1")

DRY_RUN_INFEASIBLE = 5
"""``audit --dry-run`` printed "Feasible on this machine: NO": a CI step can gate on it
before it spends hours. Not an error (the plan was computed); distinct from 2 so a broken
policy and a plan too big for this machine read apart."""

COMMANDS = {
    "audit": ("certify.cli.audit", "audit", "Audit a model's resistance to harmful fine-tuning."),
    "verify": ("certify.cli.evidence", "verify", "Verify a signed run directory offline."),
    "render": ("certify.cli.evidence", "render", "Rebuild reports from a run's evidence."),
    "replay": ("certify.cli.replay", "replay",
               "Re-run cells of a signed audit and compare with its numbers."),
    "sign": ("certify.cli.evidence", "sign", "Sign an existing run directory."),
    "keygen": ("certify.cli.evidence", "keygen", "Write a signing key pair."),
    "merge": ("certify.cli.audit", "merge", "Merge sharded run directories into one."),
    "diff": ("certify.cli.diff", "diff", "Compare the audits of two releases."),
    "policy": ("certify.cli.policy", "policy", "Validate, list, show and describe policies."),
    "list": ("certify.cli.plugins", "list_plugins", "List attacks, judges or evals."),
    "digest": ("certify.cli.plugins", "digest", "Print a model's root digest."),
    "view": ("certify.cli.view", "view", "Browse a run's samples and evidence locally."),
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
    args = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not any(a in ("-v", "-vv", "--verbose") for a in args):
        # transformers, datasets and lm-eval draw their own progress bars; certify has one.
        os.environ.setdefault("TQDM_DISABLE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    as_json = json_requested(args)
    try:
        rc = cli.main(args=args, prog_name="certify", standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt):  # Ctrl-C before the audit's handlers
        _fail("Interrupted", Interrupted.MESSAGE, Interrupted.exit_code, as_json)
    except click.ClickException as e:
        code = 2 if isinstance(e, click.UsageError) else e.exit_code
        if as_json:
            echo_error("UsageError", e.format_message(), code)
        e.show()
        sys.exit(code)
    except Interrupted as e:  # not an error: the run directory resumes
        _fail("Interrupted", str(e), e.exit_code, as_json)
    except CertifyError as e:
        _fail(type(e).__name__, e.message, e.exit_code, as_json, hint=e.hint,
              problems=getattr(e, "problems", None), shown=f"error: {e}")
    except Exception as e:  # a bug: report it, never exit 0 or 1
        logging.getLogger("certify").debug("unexpected error", exc_info=True)
        _fail("InternalError", f"{type(e).__name__}: {e}", exit_code_for(e), as_json,
              shown=f"internal error: {type(e).__name__}: {e} (run with -vv for the traceback)")
    sys.exit(rc if isinstance(rc, int) else 0)


def json_requested(args: list[str]) -> bool:
    """Whether ARGS ask a command that has ``--json`` for it. Such a command's caller parses
    stdout, so its errors must be JSON there too (stderr keeps the human message)."""
    options = args[:args.index("--")] if "--" in args else args
    if "--json" not in options:
        return False
    name = next((a for a in options if not a.startswith("-")), None)
    command = cli.get_command(click.Context(cli), name) if name else None
    return command is not None and any("--json" in p.opts for p in command.params)


def _fail(kind: str, message: str, code: int, as_json: bool, *, hint: str | None = None,
          problems: list[str] | None = None, shown: str | None = None) -> None:
    if as_json:
        echo_error(kind, message, code, hint=hint, problems=problems)
    click.echo(shown or message, err=True)
    sys.exit(code)


def echo_error(kind: str, message: str, code: int, *, hint: str | None = None,
               problems: list[str] | None = None) -> None:
    """The one JSON error object a ``--json`` command prints on stdout when it fails:
    ``{"error": {"kind", "message", "exit_code", "hint"?, "problems"?}}``."""
    error: dict[str, Any] = {"kind": kind, "message": message, "exit_code": code}
    if hint:
        error["hint"] = hint
    if problems:
        error["problems"] = problems
    echo_json({"error": error})


def echo_json(data: Any) -> None:
    import json

    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
