"""Find policy and overlay files: a local path wins, otherwise a shipped one of that name."""

from __future__ import annotations

from pathlib import Path

from certify import registry
from certify.errors import UsageError


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
