"""The conductor: the audit as one visible pipeline (``pipeline.py``).

policy → plan → execute → collect → assess → render → sign. ``certify.run`` only
executes cells; the stages live in their own packages (policy, plan, run, assess,
report, attest) and only the conductor calls them in order.
"""

from certify.conductor.options import AuditOptions, RunResult, default_out
from certify.conductor.pipeline import audit, merge, render_run, sign_run
from certify.conductor.preview import preview

__all__ = ["AuditOptions", "RunResult", "audit", "default_out", "merge", "preview",
           "render_run", "sign_run"]
