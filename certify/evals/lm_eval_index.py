"""Where lm-eval's own tasks live, remembered between processes.

Indexing lm-eval's bundled task YAMLs (about 16,000 files in lm-eval 0.4.13) parses
every one of them: about 10 s on a quiet 2-core CPU, 40 s on a loaded one. Every process
that checks a policy naming a standard task (``mmlu``, ``wmdp_bio``) paid it again, the
dry run included, only to learn that the names exist and to load the few tasks named.

So the first such process stores, per lm-eval installation, each name's kind and the
task directories (``lm_eval/tasks/mmlu/default``) that its YAMLs, its group's members
or its tag's members live in. Later processes read the names from that file, and build
a TaskManager over only the directories the policy's tasks need: the same YAMLs lm-eval
would load for them, indexed in a fraction of the time. A name the file does not place,
or an installation that changed, falls back to the full index (see ``narrowed_paths``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any

from certify._io import atomic_write_text, cache_root

FORMAT = 1


def tasks_root() -> Path:
    import lm_eval.tasks

    return Path(lm_eval.tasks.__file__).parent


def _key(root: Path) -> str:
    """The installation's identity: the directory, and its package RECORD's name (with
    the version), size and time (a reinstall rewrites it). Not the task
    directories' times: the first import of a task's helper module writes a
    ``__pycache__`` and changes them. An editable lm-eval whose task YAMLs are edited by
    hand needs ``lm_eval_index`` in certify's cache directory removed."""
    # Found beside the package: importlib.metadata's lookup scans sys.path (0.5 s).
    records = sorted(root.parent.parent.glob("lm_eval-*.dist-info/RECORD"))
    stamp = ";".join(f"{r.parent.name}:{r.stat().st_size}:{r.stat().st_mtime_ns}"
                     for r in records)
    return hashlib.sha256(f"{FORMAT}\0{root}\0{stamp}".encode()).hexdigest()[:20]


def _dir(path: Path | None, root: Path) -> str | None:
    """A YAML's directory relative to lm-eval's task root, or None outside it."""
    if path is None:
        return None
    try:
        parts = Path(path).resolve().parent.relative_to(root.resolve()).parts
    except ValueError:
        return None
    return "/".join(parts) if parts else None


def _placement(manager: Any, root: Path) -> dict[str, Any]:
    """name -> the directories its YAMLs and its members' lie in; None where one lies
    outside them (then only the full index is safe)."""
    index = manager.task_index
    own = {name: _dir(e.yaml_path, root) for name, e in index.items()}
    dirs: dict[str, list[str] | None] = {}

    def need(name: str, depth: int = 0) -> set[str] | None:
        entry = index.get(name)
        if entry is None or depth > 8:
            return set()
        kind = getattr(entry.kind, "name", str(entry.kind)).upper()
        out: set[str] = set()
        if entry.yaml_path is not None:
            top = own[name]
            if top is None:
                return None
            out.add(top)
        members: list[str] = []
        if kind == "GROUP":
            members = [s if isinstance(s, str) else s.get("task") for s in
                       (entry.cfg or {}).get("task") or [] if isinstance(s, str | dict)]
        elif kind == "TAG":
            members = sorted(entry.tags)
        for m in members:
            if isinstance(m, str) and m != name:
                sub = need(m, depth + 1)
                if sub is None:
                    return None
                out |= sub
        return out

    for name in index:
        got = need(name)
        dirs[name] = sorted(got) if got is not None else None
    return dirs


def _file(root: Path) -> Path:
    return cache_root() / "lm_eval_index" / f"{_key(root)}.json"


def load() -> dict[str, Any] | None:
    """The stored placement of this installation's tasks, or None (not built yet, or
    unreadable: the caller rebuilds it)."""
    path = _file(tasks_root())
    if path not in _LOADED:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not (isinstance(data, dict) and data.get("format") == FORMAT):
            return None
        _LOADED[path] = data.get("dirs")
    return _LOADED[path]


_LOADED: dict[Path, Any] = {}


def store(manager: Any) -> dict[str, Any]:
    """Store the placement read off a TaskManager that indexed lm-eval's own tasks."""
    root = tasks_root()
    dirs = _placement(manager, root)
    with contextlib.suppress(OSError):  # a read-only cache costs time, not correctness
        atomic_write_text(_file(root), json.dumps({"format": FORMAT, "root": str(root),
                                                   "dirs": dirs}))
    _LOADED.clear()
    return dirs


def narrowed_paths(dirs: dict[str, Any], tasks: list[str]) -> list[str] | None:
    """The task directories that hold every YAML the tasks lm-eval knows need (names it
    does not know need none), outermost only (lm-eval indexes a directory's subdirectories
    too); None when some task lies outside them."""
    root = tasks_root()
    need: set[str] = set()
    for task in tasks:
        if task not in dirs:
            continue
        placed = dirs[task]
        if not isinstance(placed, list):
            return None
        need.update(placed)
    outer = [d for d in sorted(need)
             if not any(d.startswith(other + "/") for other in need if other != d)]
    return [str(root / d) for d in outer]
