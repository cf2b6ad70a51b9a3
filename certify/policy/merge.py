"""Policy composition: `extends` and overlay files merge into the policy they modify.

Mappings merge key by key; lists whose entries all carry a unique ``id`` (attacks,
checks) merge entry by entry, so an overlay can change one threshold of one check
without restating the rest; any other value replaces the one below it, except the
disclosures (`limitations`, `out_of_scope`), which only grow: an overlay can add a
limitation but never drop one the policy declares. The
"file:line" map of every field is merged alongside, so a validation error points
at the file that wrote the offending value.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ACCUMULATE", "DEFINING_FIELD", "Lines", "duplicate_ids", "located", "merge",
           "merge_lines", "unknown_ids"]

ACCUMULATE = ("limitations", "out_of_scope")
"""Top-level lists that overlays and child policies extend instead of replacing."""


def _accumulates(key: Any, base: Any, override: Any, top: bool) -> bool:
    return top and key in ACCUMULATE and isinstance(base, list) and isinstance(override, list)


def _by_id(base: Any, override: Any) -> bool:
    """Whether two lists merge entry by entry: all {id: ...} mappings, ids unique in each.

    Duplicate ids are not merged (that would silently fold them together); the
    override then replaces the list and validation reports the duplicates.
    """
    if not (isinstance(base, list) and isinstance(override, list) and override):
        return False
    if not all(isinstance(x, dict) and "id" in x for x in base + override):
        return False
    return all(len({repr(x["id"]) for x in xs}) == len(xs) for xs in (base, override))


def duplicate_ids(data: dict[str, Any]) -> list[tuple[str, int, Any]]:
    """(key, index, id) of each top-level list entry whose id an earlier entry already used.

    A file that modifies another names each entry once; two entries with one id would
    otherwise have to be folded together or replace the whole list, and both surprise.
    """
    found = []
    for key, value in data.items():
        if isinstance(value, list):
            seen: set[str] = set()
            for i, entry in enumerate(value):
                if isinstance(entry, dict) and "id" in entry:
                    if repr(entry["id"]) in seen:
                        found.append((key, i, entry["id"]))
                    seen.add(repr(entry["id"]))
    return found


DEFINING_FIELD = {"attacks": "attack", "checks": "check"}
"""The field that makes an id-keyed entry a definition rather than a change to one below."""


def unknown_ids(base: dict[str, Any], override: dict[str, Any]) -> dict[str, list[tuple[int, Any]]]:
    """Per list key, (index, id) of each override entry that changes an entry ``base`` lacks.

    An entry without its defining field (``attack``, ``check``) only makes sense as a
    change to an entry of the same id below it; with no such entry, merging would add
    a half entry whose validation errors ("attack: required field is missing") hide the
    real mistake: the override was written for another policy.
    """
    found: dict[str, list[tuple[int, Any]]] = {}
    for key, field in DEFINING_FIELD.items():
        below, above = base.get(key), override.get(key)
        if not (isinstance(below, list) and isinstance(above, list)):
            continue
        known = {repr(x.get("id")) for x in below if isinstance(x, dict)}
        missing = [(i, x["id"]) for i, x in enumerate(above) if isinstance(x, dict)
                   and "id" in x and field not in x and repr(x["id"]) not in known]
        if missing:
            found[key] = missing
    return found


def merge(base: Any, override: Any, top: bool = True) -> Any:
    """Overlay ``override`` on ``base``: mappings merge, lists of {id: ...} merge by id.

    Any other value, an empty list included, replaces the base value.
    """
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            if key not in base:
                out[key] = value
            elif _accumulates(key, base[key], value, top):
                out[key] = base[key] + [v for v in value if v not in base[key]]
            else:
                out[key] = merge(base[key], value, top=False)
        return out
    if _by_id(base, override):
        merged = {x["id"]: x for x in base}
        for x in override:
            merged[x["id"]] = merge(merged[x["id"]], x, top=False) if x["id"] in merged else x
        return list(merged.values())
    return override


Lines = dict[tuple[Any, ...], str]
"""Field path → "file:line" where it was written, for error messages."""


def located(lines: dict[tuple[Any, ...], Any], label: str) -> Lines:
    return {path: f"{label}:{line}" for path, line in lines.items()}


def _copy_lines(src: Lines, prefix: tuple[Any, ...], to: tuple[Any, ...], out: Lines) -> None:
    n = len(prefix)
    for path, where in src.items():
        if path[:n] == prefix:
            out[to + path[n:]] = where


def merge_lines(base: Any, override: Any, lb: Lines, lo: Lines, pb: tuple[Any, ...] = (),
                po: tuple[Any, ...] = (), pm: tuple[Any, ...] = (),
                out: Lines | None = None) -> Lines:
    """The "file:line" map of ``merge(base, override)``, following it step by step."""
    out = {} if out is None else out
    if isinstance(base, dict) and isinstance(override, dict):
        if pm in lo or pm in lb:
            out[pm] = lo.get(po, lb.get(pb, ""))
        for key in base:
            if key not in override:
                _copy_lines(lb, (*pb, key), (*pm, key), out)
        for key, value in override.items():
            if key in base and _accumulates(key, base[key], value, pm == ()):
                _copy_lines(lb, (*pb, key), (*pm, key), out)
                added = [j for j, v in enumerate(value) if v not in base[key]]
                for k, j in enumerate(added, start=len(base[key])):
                    _copy_lines(lo, (*po, key, j), (*pm, key, k), out)
            elif key in base:
                merge_lines(base[key], value, lb, lo, (*pb, key), (*po, key), (*pm, key), out)
            else:
                _copy_lines(lo, (*po, key), (*pm, key), out)
        return out
    if _by_id(base, override):
        where = {x["id"]: j for j, x in enumerate(override)}
        if po in lo:
            out[pm] = lo[po]
        for i, x in enumerate(base):
            if x["id"] in where:
                j = where.pop(x["id"])
                merge_lines(x, override[j], lb, lo, (*pb, i), (*po, j), (*pm, i), out)
            else:
                _copy_lines(lb, (*pb, i), (*pm, i), out)
        for k, j in enumerate(sorted(where.values()), start=len(base)):
            _copy_lines(lo, (*po, j), (*pm, k), out)
        return out
    _copy_lines(lo, po, pm, out)
    return out
