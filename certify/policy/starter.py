"""A starter policy that extends a shipped one: `certify policy init FILE`.

A user auditing their own model rarely writes a policy from nothing; they change a few
thresholds or budgets of a shipped one. The starter names the base, and lists the
base's attacks and checks with their current values as comments, so that changing one
is uncommenting two lines. The text is validated before it is written.
"""

from __future__ import annotations

import re
from pathlib import Path

from certify._io import atomic_write_text
from certify.errors import UsageError
from certify.policy.load import load_policy, resolve
from certify.policy.schema import Policy

THRESHOLDS = ("max_rate", "min_rate", "min_ratio", "harm_level", "max_drop",
              "max_drop_per_task", "max_increase", "min_accuracy")
"""Check fields worth showing in the starter: the numbers a verdict is decided against."""
SLUG = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


def _checks(policy: Policy) -> list[str]:
    lines = ["# checks:                       # change a check by its id; fields you omit keep "
             "the base's"]
    for check in policy.checks:
        values = check.model_dump(mode="json")
        shown = {k: values[k] for k in THRESHOLDS if values.get(k) is not None}
        lines.append(f"#   - id: {check.id:<26} # {check.check}"
                     + "".join(f"; {k} {v}" for k, v in shown.items()))
        lines += [f"#     {k}: {v}" for k, v in list(shown.items())[:1]]
    return lines


def _attacks(policy: Policy) -> list[str]:
    lines = ["# attacks:                      # change an attack's budget or seeds by its id"]
    for attack in policy.attacks:
        lines += [f"#   - id: {attack.id:<26} # {attack.attack}, {attack.purpose}",
                  f"#     seeds: {attack.seeds}"]
    return lines


def starter_text(base: str, policy_id: str) -> str:
    """The starter policy extending ``base`` (a shipped name or a path), as YAML text."""
    loaded = load_policy(base)
    p = loaded.policy
    header = [
        f"# {policy_id}: a policy extending {loaded.source} (written by `certify policy init`).",
        "# Every value not set here is the base's: `certify policy show "
        f"{base} --effective` prints them all.",
        "# Change an attack or a check by naming its id and only the fields you change; an",
        "# entry with a new id and its own `attack:` or `check:` field adds one. The base's",
        "# entries and their current values are listed below as comments.",
        f"# Check it: `certify policy validate {policy_id}.yaml`; cost it before running:",
        f"# `certify audit MODEL --policy {policy_id}.yaml --reference BASE_MODEL --dry-run`.",
        "# PROJECT INTERPRETATION — NOT LEGAL TEXT: your thresholds are your own choice.",
        f"extends: {base}",
        f"id: {policy_id}",
        'version: "0.1.0"',
        f'title: "{policy_id} (extends {p.id})"',
        "",
    ]
    disclosures = ["", "# limitations:                  # added to the base's; none can be "
                   "dropped", '#   - "what this audit does not cover"']
    return "\n".join([*header, *_checks(p), "", *_attacks(p), *disclosures]) + "\n"


def write_starter(path: Path, base: str) -> Path:
    """Write the starter policy to ``path`` (never over an existing file); validated."""
    if path.exists():
        raise UsageError(f"{path} already exists; certify policy init never overwrites a file",
                         hint="give a new file name, or delete the file first")
    if path.suffix not in (".yaml", ".yml"):
        raise UsageError(f"{path}: a policy file ends in .yaml", hint=f"use {path}.yaml")
    resolve(base)  # an unknown base is a usage error naming the shipped policies
    policy_id = path.stem if SLUG.match(path.stem) else "my-policy"
    text = starter_text(base if not Path(base).is_file() else str(Path(base).resolve()),
                        policy_id)
    tmp = path.with_name(f".{path.name}.init")
    atomic_write_text(tmp, text)
    try:
        load_policy(str(tmp))
    finally:
        tmp.unlink(missing_ok=True)
    atomic_write_text(path, text)
    return path
