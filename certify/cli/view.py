"""`certify view RUN_DIR`: browse a run's cells, checkpoints and samples in a local browser.

Torch-free, like verify and render: it reads the run directory and serves pages on
127.0.0.1 until Ctrl-C (then exits 0).
"""

from __future__ import annotations

import signal
from pathlib import Path

import click

DEFAULT_PORT = 7575


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True,
              help="Port on 127.0.0.1 (0: any free port).")
def view(run_dir: Path, port: int) -> None:
    """Browse RUN_DIR's cells, checkpoints and samples at a local URL (read-only).

    Filters by label, judge disagreement, category, evaluation, model, cell and step.
    Listens on 127.0.0.1 only, fetches nothing external, keeps the policy's redaction of
    harmful responses. Stop with Ctrl-C.
    """
    from certify.conductor.collect import policy_of
    from certify.report import load_evidence
    from certify.report.viewer import open_server

    evidence, _ = load_evidence(run_dir)
    redact = policy_of(evidence).evidence.redact_harmful
    server = open_server(run_dir, evidence, redact=redact, port=port)
    # Ctrl-C and SIGTERM stop the server even when the parent started this process with
    # SIGINT ignored (CI runners, pytest-xdist workers): an ignored disposition is inherited.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    click.echo(f"certify view: {server.url}  (serving {run_dir}; Ctrl-C to stop)", nl=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("certify view: stopped", err=True)
    finally:
        server.server_close()
