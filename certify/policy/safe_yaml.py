"""Parse policy YAML safely: safe loader only, duplicate keys refused, non-UTF-8 bytes and
alias expansions that would explode in memory ("billion laughs") reported, never tracebacks.
Returns the mapping and a map from field path to line number for error messages."""

from __future__ import annotations

from typing import Any

import yaml

from certify.errors import PolicyError

MAX_POLICY_BYTES = 1 << 20
MAX_YAML_NODES = 100_000


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
                    f"{label}:{node.start_mark.line + 1}: {dotted(path)}: {node.value!r} holds "
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


def dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


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
                    f"{label}:{line}: {dotted(path)}: YAML anchors/aliases expand to more than "
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
