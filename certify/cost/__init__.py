"""Plan and cost preview for `certify audit --dry-run`: cells, steps, tokens, FLOP, memory, time.

Torch-free on a CPU: the model's size comes from its config, never its weights.
"""

from certify.cost.preview import dry_run
from certify.cost.report import DryRunReport

__all__ = ["DryRunReport", "dry_run"]
