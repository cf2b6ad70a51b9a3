"""Small I/O helpers: atomic writes, canonical JSON, sha256, UTC timestamps, the cache dir."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from certify import _fault


def canonical_json(obj: Any) -> bytes:
    """Serialize ``obj`` deterministically: sorted keys, no whitespace, no NaN."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def short_hash(obj: Any, n: int = 12) -> str:
    """A short stable id for a JSON-serializable object."""
    return sha256_bytes(canonical_json(obj))[:n]


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o644) -> None:
    """Write ``data`` so that readers see either the old file or the whole new one.

    The bytes go to a temporary file in the same directory, are fsynced, and then
    renamed over ``path``. A crash or a full disk leaves no partial file behind.
    """
    atomic_write(path, lambda f: f.write(data), mode=mode)


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object], *,
                 mode: int = 0o644) -> None:
    """:func:`atomic_write_bytes` for a writer that streams to a file (``torch.save``), so
    a large file never has to be held in memory whole."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        _fault.reached("write")
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str, *, mode: int = 0o644) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), mode=mode)


def json_bytes(obj: Any) -> bytes:
    """Readable, deterministic JSON (sorted keys, 2-space indent, trailing newline)."""
    text = json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False)
    return (text + "\n").encode("utf-8")


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_bytes(path, json_bytes(obj))


def read_json(path: str | os.PathLike[str]) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def iter_jsonl(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def jsonl_bytes(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(
        json.dumps(r, sort_keys=True, ensure_ascii=False, allow_nan=False).encode("utf-8") + b"\n"
        for r in rows
    )


TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
"""RFC 3339 UTC to the second, as every certify record writes its timestamps."""


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(TIME_FORMAT)


def parse_time(text: str) -> datetime:
    """The inverse of :func:`format_time` (``2026-01-31T12:00:00Z``)."""
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=UTC)


def utc_now() -> str:
    """Now, as certify writes it."""
    return format_time(datetime.now(UTC))


def cache_root() -> Path:
    """certify's cache directory: ``$CERTIFY_CACHE_DIR``, else the user cache directory."""
    env = os.environ.get("CERTIFY_CACHE_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("certify"))
