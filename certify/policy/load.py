"""Load a policy: find the file, parse YAML safely, merge `extends`, validate everything.

Every problem is collected and reported at once, each with the file, the line, the
field and what was expected ("did you mean" for misspelt names). YAML is parsed
with the safe loader only; duplicate keys, non-UTF-8 bytes, and alias expansions
that would explode in memory ("billion laughs") are errors, never tracebacks.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from certify import registry
from certify._io import sha256_bytes
from certify.errors import CertifyError, PolicyError, UsageError
from certify.policy import schema
from certify.policy.merge import Lines, duplicate_ids, located, merge, merge_lines
from certify.policy.schema import Policy

MAX_POLICY_BYTES = 1 << 20
MAX_YAML_NODES = 100_000
MAX_CELLS = 20_000
MAX_EXTENDS_DEPTH = 8

# Which kind of measurement each check reads (eval plug-ins declare `measures`).
CHECK_MEASURES: dict[str, tuple[str, ...]] = {
    "strong_resistance": ("harm",),
    "weak_resistance": ("harm",),
    "positive_control": ("harm",),
    "generalization": ("harm",),
    "post_finetune_safety": ("harm",),
    "judge_validity": ("harm",),
    "stability": ("capability", "task"),
    "over_refusal": ("refusal",),
    "trainability": ("task",),
}


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

def shipped_dir() -> Path:
    """Directory of the policies shipped with certify (wheel or source checkout)."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "_shipped" / "policies", here.parent / "policies"):
        if candidate.is_dir():
            return candidate
    return here.parent / "policies"


def shipped_names() -> list[str]:
    return sorted(p.stem for p in shipped_dir().glob("*.yaml"))


def resolve(name_or_path: str) -> tuple[Path, str]:
    """Return (path, label). A local file wins; otherwise a shipped policy of that name."""
    local = Path(name_or_path).expanduser()
    if local.is_file():
        return local, str(name_or_path)
    stem = name_or_path[:-5] if name_or_path.endswith(".yaml") else name_or_path
    stem = stem[:-4] if stem.endswith(".yml") else stem
    shipped = shipped_dir() / f"{stem}.yaml"
    if "/" not in stem and shipped.is_file():
        return shipped, f"shipped:{stem}"
    names = shipped_names()
    raise UsageError(
        f"no policy file {name_or_path!r} here and no shipped policy of that name"
        f"{registry.suggest(stem, names)}",
        hint=f"give a path to a YAML file, or one of the shipped policies: {', '.join(names)}",
    )


# --------------------------------------------------------------------------- safe YAML

class _Loader(yaml.SafeLoader):
    """Safe loader that refuses duplicate keys."""


def _check_duplicates(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "mapping keys must be plain scalars", key_node.start_mark
            ) from None
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None,
                f"duplicate key {key!r} (first on line {seen[key] + 1})", key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _check_duplicates)


def _expanded_size(node: yaml.Node, memo: dict[int, int], limit: int) -> int:
    """Node count with every alias expanded, computed without expanding anything."""
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = limit + 1  # a cycle counts as infinite
    if isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(k, memo, limit) + _expanded_size(v, memo, limit)
                       for k, v in node.value)
    elif isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(v, memo, limit) for v in node.value)
    else:
        size = 1
    memo[key] = min(size, limit + 1)
    return memo[key]


def _refuse_unencodable(root: yaml.Node, label: str) -> None:
    """Refuse text that cannot be written as UTF-8 (a "\\ud800" escape), before it is used."""
    stack: list[tuple[yaml.Node, tuple[Any, ...]]] = [(root, ())]
    seen: set[int] = set()
    while stack:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            try:
                node.value.encode("utf-8")
            except UnicodeEncodeError:
                raise PolicyError(label, [
                    f"{label}:{node.start_mark.line + 1}: {_dotted(path)}: {node.value!r} holds "
                    "an unpaired surrogate escape, which no UTF-8 file can store; remove the "
                    "escape"]) from None
        elif isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                stack += [(k, path), (v, path + (k.value if isinstance(k, yaml.ScalarNode)
                                                 else "?",))]
        elif isinstance(node, yaml.SequenceNode):
            stack += [(v, path + (i,)) for i, v in enumerate(node.value)]


def _bomb_site(node: yaml.Node, sizes: dict[int, int], limit: int) -> tuple[tuple[Any, ...], int]:
    """Path and line of the first field whose expansion alone exceeds ``limit``."""
    path: tuple[Any, ...] = ()
    line = node.start_mark.line + 1
    visited: set[int] = set()
    while id(node) not in visited:  # an alias may contain itself
        visited.add(id(node))
        if isinstance(node, yaml.MappingNode):
            children = [(k.value, k.start_mark.line + 1, v) for k, v in node.value]
        elif isinstance(node, yaml.SequenceNode):
            children = [(i, v.start_mark.line + 1, v) for i, v in enumerate(node.value)]
        else:
            children = []
        big = next((c for c in children if sizes.get(id(c[2]), 0) > limit), None)
        if big is None:
            break
        path, line, node = path + (big[0],), big[1], big[2]
    return path, line


def _line_map(node: yaml.Node, path: tuple[Any, ...], out: dict[tuple[Any, ...], int]) -> None:
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode):
                out.setdefault(path + (k.value,), k.start_mark.line + 1)
                _line_map(v, path + (k.value,), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _line_map(v, path + (i,), out)


def parse_yaml(data: bytes, label: str) -> tuple[dict[str, Any], dict[tuple[Any, ...], int]]:
    """Parse policy bytes into (mapping, line map). Raises PolicyError on any problem."""
    if len(data) > MAX_POLICY_BYTES:
        raise PolicyError(label, [f"file is {len(data)} bytes; policies are limited to "
                                  f"{MAX_POLICY_BYTES} bytes"])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise PolicyError(label, [f"{label}:{line}: not valid UTF-8 (byte 0x{data[e.start]:02x} "
                                  f"at offset {e.start}); save the file as UTF-8"]) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                raise PolicyError(label, [f"{label}: the file is empty"])
            sizes: dict[int, int] = {}
            if _expanded_size(node, sizes, MAX_YAML_NODES) > MAX_YAML_NODES:
                path, line = _bomb_site(node, sizes, MAX_YAML_NODES)
                raise PolicyError(label, [
                    f"{label}:{line}: {_dotted(path)}: YAML anchors/aliases expand to more than "
                    f"{MAX_YAML_NODES} nodes (an alias bomb?); write the values out or use "
                    "fewer aliases"])
            _refuse_unencodable(node, label)
            value = loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f"{label}:{mark.line + 1}" if mark is not None else label
        problem = getattr(e, "problem", None) or str(e)
        if isinstance(e, yaml.reader.ReaderError):  # a control character: no mark, a position
            where = f"{label}:{text.count(chr(10), 0, e.position) + 1}"
            code = e.character if isinstance(e.character, int) else ord(e.character)
            problem = f"control character U+{code:04X} is not allowed in YAML"
        context = getattr(e, "context", None)
        msg = f"{context}: {problem}" if context and "duplicate" not in str(problem) else problem
        start = getattr(e, "context_mark", None)
        if context and start is not None and mark is not None and start.line != mark.line:
            msg += f" (the construct began on line {start.line + 1})"
        raise PolicyError(label, [f"{where}: invalid YAML: {msg}"]) from None
    except RecursionError:
        raise PolicyError(label, [f"{label}: YAML nesting is too deep"]) from None
    if not isinstance(value, dict):
        raise PolicyError(label, [f"{label}:{node.start_mark.line + 1}: the top level must be "
                                  "a mapping of policy fields, "
                                  f"got {type(value).__name__}"])
    lines: dict[tuple[Any, ...], Any] = {}
    _line_map(node, (), lines)
    return value, lines


# --------------------------------------------------------------------------- validation

def _field_names() -> list[str]:
    names: set[str] = set()
    for obj in vars(schema).values():
        if isinstance(obj, type) and issubclass(obj, BaseModel):
            names.update(obj.model_fields)
    return sorted(names)


def _where(label: str, lines: dict[tuple[Any, ...], Any], loc: tuple[Any, ...]) -> str:
    """Where the deepest written part of ``loc`` is: "file:line" (merged maps carry files)."""
    path: tuple[Any, ...] = ()
    best = lines.get((), 1)
    for part in loc:
        if path + (part,) in lines:
            path = path + (part,)
            best = lines[path]
    return best if isinstance(best, str) else f"{label}:{best}"


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _pydantic_problems(err: ValidationError, label: str, lines: dict[tuple[Any, ...], Any],
                       prefix: tuple[Any, ...] = ()) -> list[str]:
    problems = []
    known = _field_names()
    for e in err.errors():
        loc = prefix + tuple(p for p in e["loc"] if p not in schema.CHECK_KINDS)
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = f"unknown field{registry.suggest(str(loc[-1]), known)}"
        elif e["type"] == "union_tag_invalid":
            loc += ("check",)
            msg = f"unknown check kind; expected one of: {', '.join(schema.CHECK_KINDS)}"
        elif e["type"] == "missing":
            msg = "required field is missing"
        problems.append(f"{_where(label, lines, loc)}: {_dotted(loc)}: {msg}")
    return problems


def _point_problems(err: ValidationError, label: str, lines: dict[tuple[Any, ...], Any],
                    loc: tuple[Any, ...], point: dict[str, Any]) -> list[str]:
    """Problems of one budget point, each located where its value was written."""
    as_params = _pydantic_problems(err, label, lines, loc + ("params",))
    as_budget = _pydantic_problems(err, label, lines, loc + ("budget",))
    return [b if e["loc"] and e["loc"][0] in point else p
            for e, p, b in zip(err.errors(), as_params, as_budget, strict=True)]


def _budget_points(budget: dict[str, Any]) -> list[dict[str, Any]]:
    axes = {k: (v if isinstance(v, list) else [v]) for k, v in budget.items()}
    keys = list(axes)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*axes.values())]


def grid_size(entry: schema.AttackEntry) -> int:
    sizes = [len(v) if isinstance(v, list) else 1 for v in entry.budget.values()]
    return math.prod(sizes) * len(entry.seeds) * len(entry.models)


def _plugin_problems(policy: Policy, label: str, lines: dict[tuple[Any, ...], Any]) -> list[str]:
    problems: list[str] = []
    measures: dict[str, str] = {}
    for name, ev in policy.evaluations.items():
        loc: tuple[Any, ...] = ("evaluations", name)
        try:
            spec = registry.get("eval", ev.eval)
        except UsageError as e:
            problems.append(f"{_where(label, lines, loc + ('eval',))}: {_dotted(loc)}.eval: "
                            f"{e.message}")
            continue
        measures[name] = spec.extra.get("measures", "")
        try:
            params = spec.params.model_validate(ev.params)
        except ValidationError as e:
            problems += _pydantic_problems(e, label, lines, loc + ("params",))
            continue
        for kind, ref_name, ref_params, ref_loc in getattr(params, "plugin_refs", list)():
            full = loc + ("params",) + tuple(ref_loc)
            try:
                registry.get(kind, ref_name).params.model_validate(ref_params)
            except UsageError as e:
                problems.append(f"{_where(label, lines, full)}: {_dotted(full)}: {e.message}")
            except ValidationError as e:
                problems += _pydantic_problems(e, label, lines, full + ("params",))

    total_cells, largest = 0, (0, 0)
    for i, entry in enumerate(policy.attacks):
        loc = ("attacks", i)
        total_cells += grid_size(entry)
        largest = max(largest, (grid_size(entry), i))
        try:
            spec = registry.get("attack", entry.attack)
        except UsageError as e:
            problems.append(f"{_where(label, lines, loc + ('attack',))}: "
                            f"attacks[{i}].attack: {e.message}")
            continue
        fields = list(spec.params.model_fields)
        key_problems = [
            f"{_where(label, lines, loc + ('budget', key))}: attacks[{i}].budget.{key}: not a "
            f"parameter of attack {entry.attack!r}{registry.suggest(key, fields)}"
            for key in entry.budget if key not in fields
        ] + [
            f"{_where(label, lines, loc + ('params', key))}: attacks[{i}]: {key!r} is set in "
            "both params and budget; keep one"
            for key in sorted(set(entry.budget) & set(entry.params))
        ]
        problems += key_problems
        if not key_problems and grid_size(entry) <= MAX_CELLS:
            seen: set[str] = set()
            for point in _budget_points(entry.budget):
                try:
                    spec.params.model_validate({**entry.params, **point})
                except ValidationError as e:
                    for p in _point_problems(e, label, lines, loc, point):
                        if p not in seen:
                            seen.add(p)
                            problems.append(p)
        for j, ev_id in enumerate(entry.evaluate + entry.evaluate_final):
            if ev_id not in policy.evaluations:
                problems.append(f"{_where(label, lines, loc + ('evaluate', j))}: attacks[{i}]: "
                                f"unknown evaluation {ev_id!r}"
                                f"{registry.suggest(ev_id, list(policy.evaluations))}")
    if total_cells > MAX_CELLS:
        i = largest[1]
        problems.append(f"{_where(label, lines, ('attacks', i, 'budget'))}: attacks[{i}].budget: "
                        f"the attack grids expand to {total_cells} cells (this one to "
                        f"{largest[0]}); certify refuses more than {MAX_CELLS} (split the policy "
                        "or shrink the axes)")
    problems += _reference_problems(policy, label, lines, measures)
    return problems


def _reference_problems(policy: Policy, label: str, lines: dict[tuple[Any, ...], Any],
                        measures: dict[str, str]) -> list[str]:
    problems: list[str] = []
    attack_ids = [a.id for a in policy.attacks]
    for j, ev_id in enumerate(policy.baseline_evals()):
        if ev_id not in policy.evaluations:
            problems.append(f"{_where(label, lines, ('baseline', j))}: baseline: unknown "
                            f"evaluation {ev_id!r}"
                            f"{registry.suggest(ev_id, list(policy.evaluations))}")
    for i, check in enumerate(policy.checks):
        loc = ("checks", i)
        if check.eval not in policy.evaluations:
            problems.append(f"{_where(label, lines, loc + ('eval',))}: checks[{i}] ({check.id}): "
                            f"unknown evaluation {check.eval!r}"
                            f"{registry.suggest(check.eval, list(policy.evaluations))}")
        elif measures.get(check.eval) and measures[check.eval] not in CHECK_MEASURES[check.check]:
            problems.append(f"{_where(label, lines, loc + ('eval',))}: checks[{i}] ({check.id}): "
                            f"a {check.check} check needs an evaluation measuring "
                            f"{' or '.join(CHECK_MEASURES[check.check])}, but {check.eval!r} "
                            f"measures {measures[check.eval]}")
        for a in getattr(check, "attacks", None) or []:
            if a not in attack_ids:
                problems.append(f"{_where(label, lines, loc + ('attacks',))}: checks[{i}] "
                                f"({check.id}): unknown attack {a!r}"
                                f"{registry.suggest(a, attack_ids)}")
    check_ids = [c.id for c in policy.checks]
    for i, clause in enumerate(policy.clause_map):
        for c in clause.checks:
            if c not in check_ids:
                problems.append(f"{_where(label, lines, ('clause_map', i, 'checks'))}: "
                                f"clause_map[{i}] ({clause.ref}): names check {c!r}, which this "
                                f"policy does not define{registry.suggest(c, check_ids)}")
    return problems


def validate_data(data: dict[str, Any], label: str,
                  lines: dict[tuple[Any, ...], Any] | None = None) -> Policy:
    """Validate a merged policy mapping; raise PolicyError listing every problem."""
    lines = lines or {}
    try:
        policy = Policy.model_validate(data)
    except ValidationError as e:
        problems = _located_duplicates(_pydantic_problems(e, label, lines), data, label, lines)
        partial = _partial_policy(data)
        if partial is not None:  # also report plug-in and reference problems of valid parts
            problems += [p for p in _plugin_problems(partial, label, lines) if p not in problems]
        raise PolicyError(label, problems) from None
    problems = _plugin_problems(policy, label, lines)
    if problems:
        raise PolicyError(label, problems)
    return policy


def _located_duplicates(problems: list[str], data: dict[str, Any], label: str,
                        lines: dict[tuple[Any, ...], Any]) -> list[str]:
    """Replace the schema's file-wide "duplicate ids" problem by one per repeated id, located."""
    located = []
    for key in ("attacks", "checks"):
        items = data.get(key) if isinstance(data.get(key), list) else []
        seen: set[Any] = set()
        for i, item in enumerate(items):
            ident = item.get("id") if isinstance(item, dict) else None
            if not isinstance(ident, str):
                continue
            if ident in seen:
                located.append(f"{_where(label, lines, (key, i, 'id'))}: {key}[{i}].id: "
                               f"{ident!r} is already the id of an earlier entry; ids must be "
                               "unique")
            seen.add(ident)
    if not located:
        return problems
    return [p for p in problems if "(top level): Value error, duplicate" not in p] + located


def _partial_policy(data: dict[str, Any]) -> Policy | None:
    """The parts of an invalid policy that validate on their own (for complete error lists)."""
    def valid(model: Any, items: Any) -> list[Any]:
        out = []
        for item in items if isinstance(items, list) else []:
            try:
                out.append(model.model_validate(item))
            except ValidationError:
                continue
        return out

    from pydantic import TypeAdapter

    try:
        evaluations = {k: schema.EvaluationEntry.model_validate(v)
                       for k, v in (data.get("evaluations") or {}).items()
                       if isinstance(v, dict) and isinstance(k, str)}
    except (ValidationError, AttributeError):
        evaluations = {}
    checks = []
    for item in data.get("checks") or [] if isinstance(data.get("checks"), list) else []:
        try:
            checks.append(TypeAdapter(schema.Check).validate_python(item))
        except ValidationError:
            continue
    baseline = data.get("baseline")
    return Policy.model_construct(
        attacks=valid(schema.AttackEntry, data.get("attacks")), evaluations=evaluations,
        checks=checks, clause_map=valid(schema.Clause, data.get("clause_map")),
        # Only the well-formed names: the ill-formed ones are already reported above.
        baseline=[b for b in baseline if isinstance(b, str)] if isinstance(baseline, list)
        else None)


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
    return merge(base, mapping), merge_lines(base, mapping, base_lines, lines)


def _refuse_duplicate_ids(data: dict[str, Any], lines: Lines, label: str) -> None:
    dupes = duplicate_ids(data)
    if dupes:
        raise PolicyError(label, [
            f"{_where(label, lines, (key, i))}: {key}[{i}]: id {ident!r} appears twice; a file "
            "that modifies another names each entry once" for key, i, ident in dupes])


def _relative(path: Path, parent: str) -> str:
    candidate = path.parent / parent
    return str(candidate) if candidate.is_file() else parent


def overlay_dir() -> Path:
    return shipped_dir() / "overlays"


def shipped_overlays() -> list[str]:
    return sorted(p.stem for p in overlay_dir().glob("*.yaml"))


def resolve_overlay(name_or_path: str) -> tuple[Path, str]:
    """Return (path, label) of an overlay: a local file, else a shipped overlay of that name."""
    local = Path(name_or_path).expanduser()
    if local.is_file():
        return local, str(name_or_path)
    stem = Path(name_or_path).name
    stem = stem.rsplit(".", 1)[0] if stem.endswith((".yaml", ".yml")) else stem
    shipped = overlay_dir() / f"{stem}.yaml"
    if name_or_path in (stem, f"{stem}.yaml", f"overlays/{stem}", f"overlays/{stem}.yaml") \
            and shipped.is_file():
        return shipped, f"shipped:overlays/{stem}"
    names = shipped_overlays()
    raise UsageError(f"overlay file {name_or_path!r} does not exist"
                     f"{registry.suggest(stem, names)}",
                     hint="give a path to a YAML overlay file"
                          + (f", or a shipped overlay: {', '.join(names)}" if names else ""))


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
