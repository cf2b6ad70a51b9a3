"""Load a policy: find the file, parse it safely, merge `extends` and overlays, validate.

The pieces live in their own modules: `files` (finding shipped and local files),
`safe_yaml` (parsing), `merge` (composition), `validate` (schema, plug-ins, references).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from certify._io import sha256_bytes
from certify.errors import CertifyError, PolicyError, UsageError
from certify.policy.files import (
    _relative,
    overlay_dir,
    resolve,
    resolve_overlay,
    shipped_dir,
    shipped_names,
    shipped_overlays,
)
from certify.policy.merge import (
    DEFINING_FIELD,
    Lines,
    duplicate_ids,
    located,
    merge,
    merge_lines,
    unknown_ids,
)
from certify.policy.safe_yaml import MAX_POLICY_BYTES, MAX_YAML_NODES, parse_yaml
from certify.policy.schema import Policy
from certify.policy.validate import (
    MAX_CELLS,
    _budget_points,
    _where,
    grid_size,
    validate_data,
)

MAX_EXTENDS_DEPTH = 8

__all__ = [
    "MAX_CELLS", "MAX_EXTENDS_DEPTH", "MAX_POLICY_BYTES", "MAX_YAML_NODES",
    "LoadedPolicy", "PolicyFile", "_budget_points", "grid_size", "load_policy", "merge",
    "overlay_dir", "parse_yaml", "resolve", "resolve_overlay", "shipped_dir", "shipped_names",
    "shipped_overlays", "validate_data", "validate_files",
]


@dataclass(frozen=True)
class PolicyFile:
    """One file that went into the effective policy, with the digest of its bytes."""

    role: str  # "policy" | "extends" | "overlay"
    source: str
    path: str
    sha256: str


@dataclass(frozen=True)
class LoadedPolicy:
    """A validated policy and the exact bytes it came from."""

    policy: Policy
    source: str
    path: Path
    sha256: str
    files: list[PolicyFile] = field(default_factory=list)

    @property
    def effective(self) -> dict[str, Any]:
        return self.policy.model_dump(mode="json")


# --------------------------------------------------------------------------- finding files


def _read_with_extends(path: Path, label: str, role: str, depth: int,
                       files: list[PolicyFile]) -> tuple[dict[str, Any], Lines]:
    data = path.read_bytes()
    files.append(PolicyFile(role, label, str(path), sha256_bytes(data)))
    mapping, raw_lines = parse_yaml(data, label)
    lines = located(raw_lines, label)
    parent = mapping.get("extends")
    if parent is None:
        return mapping, lines
    if not isinstance(parent, str):
        raise PolicyError(label, [f"{_where(label, lines, ('extends',))}: extends: expected a "
                                  "shipped policy name or a path"])
    try:
        base_path, base_label = resolve(parent if Path(parent).is_absolute()
                                        else str(_relative(path, parent)))
    except UsageError as e:
        raise PolicyError(label, [f"{_where(label, lines, ('extends',))}: extends: "
                                  f"{e.message}"]) from None
    if any(Path(f.path).resolve() == base_path.resolve() for f in files):
        chain = " -> ".join([f.source for f in files] + [base_label])
        raise PolicyError(label, [f"{_where(label, lines, ('extends',))}: `extends` forms a "
                                  f"cycle: {chain}"])
    if depth + 1 >= MAX_EXTENDS_DEPTH:
        raise PolicyError(label, [f"{label}: `extends` chains deeper than {MAX_EXTENDS_DEPTH} "
                                  "files; flatten the chain"])
    _refuse_duplicate_ids(mapping, lines, label)
    base, base_lines = _read_with_extends(base_path, base_label, "extends", depth + 1, files)
    _refuse_unknown_ids(base, mapping, lines, label, base_label, "extending policy")
    return merge(base, mapping), merge_lines(base, mapping, base_lines, lines)


def _refuse_duplicate_ids(data: dict[str, Any], lines: Lines, label: str) -> None:
    dupes = duplicate_ids(data)
    if dupes:
        raise PolicyError(label, [
            f"{_where(label, lines, (key, i))}: {key}[{i}]: id {ident!r} appears twice; a file "
            "that modifies another names each entry once" for key, i, ident in dupes])


def _refuse_unknown_ids(base: dict[str, Any], data: dict[str, Any], lines: Lines, label: str,
                       base_label: str, role: str) -> None:
    """An override that changes attacks or checks its base does not have was written for
    another policy; say so once per list, naming the ids and the base's own."""
    problems = []
    for key, found in unknown_ids(base, data).items():
        own = [str(x.get("id")) for x in base[key] if isinstance(x, dict)]
        named = ", ".join(f"{ident!r} (line {_where(label, lines, (key, i)).rsplit(':', 1)[-1]})"
                          for i, ident in found)
        noun = key if len(found) > 1 else key[:-1]
        problems.append(
            f"{_where(label, lines, (key, found[0][0]))}: the {role} names {noun} that "
            f"{base_label} does not have: {named}. An {role} changes {base_label}'s {key} by "
            f"id ({base_label} has {', '.join(own) or 'none'}); to add a new one, give its "
            f"`{DEFINING_FIELD[key]}` field, or use a policy that has these {key}")
    if problems:
        raise PolicyError(label, problems)


def _apply_overlay(data: dict[str, Any], lines: Lines, overlay: str,
                   files: list[PolicyFile]) -> tuple[dict[str, Any], Lines]:
    o_path, o_label = resolve_overlay(overlay)
    raw = o_path.read_bytes()
    files.append(PolicyFile("overlay", o_label, str(o_path), sha256_bytes(raw)))
    o_data, o_lines = parse_yaml(raw, o_label)
    if "extends" in o_data:
        raise PolicyError(o_label, [f"{o_label}:{o_lines[('extends',)]}: an overlay cannot "
                                    "`extends`; it is applied on top of the policy given with "
                                    "--policy"])
    o_located = located(o_lines, o_label)
    _refuse_duplicate_ids(o_data, o_located, o_label)
    _refuse_unknown_ids(data, o_data, o_located, o_label, files[0].source, "overlay")
    return merge(data, o_data), merge_lines(data, o_data, lines, o_located)


def load_policy(name_or_path: str, overlays: list[str] | tuple[str, ...] = ()) -> LoadedPolicy:
    """Find, parse, merge and validate a policy. Raises PolicyError / UsageError."""
    path, label = resolve(name_or_path)
    files: list[PolicyFile] = []
    try:
        data, lines = _read_with_extends(path, label, "policy", 0, files)
        for overlay in overlays:
            data, lines = _apply_overlay(data, lines, overlay, files)
    except OSError as e:
        raise UsageError(f"cannot read policy {label}: {e.strerror}") from None
    policy = validate_data(data, label, lines)
    return LoadedPolicy(policy, label, path, files[0].sha256, files)


def validate_files(paths: list[str], overlays: list[str] | tuple[str, ...] = (),
                   ) -> list[tuple[str, CertifyError | None]]:
    """Validate several policy files (each with ``overlays``); return (path, error or None)."""
    results: list[tuple[str, CertifyError | None]] = []
    for p in paths:
        try:
            load_policy(p, overlays)
            results.append((p, None))
        except CertifyError as e:
            results.append((p, e))
    return results
