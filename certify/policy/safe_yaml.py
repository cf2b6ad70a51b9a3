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
            if _expanded_size(node, {}, MAX_YAML_NODES) > MAX_YAML_NODES:
                raise PolicyError(label, [
                    f"{label}: YAML anchors/aliases expand to more than {MAX_YAML_NODES} nodes "
                    "(an alias bomb?); write the values out or use fewer aliases"])
            value = loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f"{label}:{mark.line + 1}" if mark is not None else label
        problem = getattr(e, "problem", None) or str(e)
        context = getattr(e, "context", None)
        msg = f"{context}: {problem}" if context and "duplicate" not in str(problem) else problem
        raise PolicyError(label, [f"{where}: invalid YAML: {msg}"]) from None
    except RecursionError:
        raise PolicyError(label, [f"{label}: YAML nesting is too deep"]) from None
    if not isinstance(value, dict):
        raise PolicyError(label, [f"{label}:1: the top level must be a mapping of policy fields, "
                                  f"got {type(value).__name__}"])
    lines: dict[tuple[Any, ...], Any] = {}
    _line_map(node, (), lines)
    return value, lines


# --------------------------------------------------------------------------- validation
