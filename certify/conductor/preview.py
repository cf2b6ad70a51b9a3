"""The dry run as the CLI runs it: the evaluations' own input checks, then the cost preview.

A dry run that prints "Feasible on this machine: yes" for a policy the audit then refuses
(exit 2: an lm-eval task that does not exist, a knowledge task that is not multiple
choice) would mislead a CI step that gates on it. So the preview first runs the input
checks that read neither weights nor datasets: each evaluation plug-in's
``check_inputs``, as preflight does. Those checks index lm-eval's task YAMLs (tens of
seconds when a policy names standard tasks) and import no torch. Datasets, judge models
and the models' weights are still not read; the audit's preflight checks them.
"""

from __future__ import annotations

from certify.conductor.options import AuditOptions
from certify.conductor.preflight import check_attack_models, check_eval_inputs
from certify.cost import DryRunReport, dry_run
from certify.policy.load import load_policy


def preview(opts: AuditOptions) -> DryRunReport:
    """The plan and its cost, once the policy's evaluations and attacks accept their
    inputs (an attack's ``check_model`` reads the models' configs: a layer out of range)."""
    loaded = load_policy(opts.policy, opts.overlays)
    check_eval_inputs(loaded)
    reference = opts.reference or loaded.policy.reference
    check_attack_models(loaded, {"candidate": opts.model,
                                 **({"reference": reference} if reference else {})})
    return dry_run(opts)
