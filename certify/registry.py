"""One small registry for plug-ins: attacks, judges and evals, looked up by name.

A plug-in is a function registered with a decorator that declares a strict pydantic
``Params`` model and its metadata (summary = first docstring line, paper link,
tags, version). Policies name plug-ins; they never name Python import paths, so a
policy file cannot run code. Built-in plug-in modules are imported on first lookup;
they keep torch imports inside function bodies, so listing and validating stay
light. Third-party packages add modules through the ``certify.plugins`` entry-point
group; those modules register with the same decorators.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

from certify.errors import UsageError

Kind = Literal["attack", "judge", "eval"]
KINDS: tuple[Kind, ...] = ("attack", "judge", "eval")
F = TypeVar("F", bound=Callable[..., Any])

_BUILTIN_MODULES: dict[Kind, tuple[str, ...]] = {
    "attack": ("certify.attacks.finetune", "certify.attacks.none", "certify.attacks.poisoned_mix",
               "certify.attacks.cipher", "certify.attacks.search"),
    "judge": ("certify.judges.canary", "certify.judges.keywords", "certify.judges.classifier",
              "certify.judges.guard"),
    "eval": ("certify.evals.harmfulness", "certify.evals.benign", "certify.evals.capability",
             "certify.evals.cipher_harmfulness"),
}


class Params(BaseModel):
    """Base of every plug-in parameter model: strict, immutable, no unknown keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class PluginSpec:
    """A registered plug-in and its declared metadata."""

    kind: Kind
    name: str
    fn: Callable[..., Any]
    params: type[Params]
    summary: str
    paper: str = ""
    tags: tuple[str, ...] = ()
    version: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def module(self) -> str:
        return self.fn.__module__

    def describe(self) -> dict[str, Any]:
        """Metadata for `certify list` and the report's methodology section."""
        return {
            "kind": self.kind,
            "name": self.name,
            "summary": self.summary,
            "paper": self.paper,
            "tags": list(self.tags),
            "version": self.version,
            "params_schema": self.params.model_json_schema(),
        }


_REGISTRY: dict[Kind, dict[str, PluginSpec]] = {k: {} for k in KINDS}
_loaded = False


def _summary(fn: Callable[..., Any]) -> str:
    doc = inspect.getdoc(fn) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _register(kind: Kind, name: str, params: type[Params], paper: str, tags: tuple[str, ...],
              version: int, extra: dict[str, Any]) -> Callable[[F], F]:
    def wrap(fn: F) -> F:
        existing = _REGISTRY[kind].get(name)
        if existing is not None and existing.fn is not fn and existing.module != fn.__module__:
            raise ValueError(f"{kind} {name!r} is already registered by {existing.module}")
        _REGISTRY[kind][name] = PluginSpec(
            kind, name, fn, params, _summary(fn), paper, tags, version, extra
        )
        return fn

    return wrap


def attack(name: str, *, params: type[Params], paper: str = "", tags: tuple[str, ...] = (),
           version: int = 1, **extra: Any) -> Callable[[F], F]:
    """Register an attack recipe: ``fn(run: CellRun, params) -> None``."""
    return _register("attack", name, params, paper, tags, version, extra)


def judge(name: str, *, params: type[Params], paper: str = "", tags: tuple[str, ...] = (),
          version: int = 1, **extra: Any) -> Callable[[F], F]:
    """Register a judge factory: ``fn(params, ctx) -> Judge``."""
    return _register("judge", name, params, paper, tags, version, extra)


def evaluation(name: str, *, params: type[Params], paper: str = "", tags: tuple[str, ...] = (),
               version: int = 1, **extra: Any) -> Callable[[F], F]:
    """Register an eval factory: ``fn(params, ctx) -> Evaluator``."""
    return _register("eval", name, params, paper, tags, version, extra)


def _load_plugins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for modules in _BUILTIN_MODULES.values():
        for module in modules:
            importlib.import_module(module)
    for ep in entry_points(group="certify.plugins"):
        importlib.import_module(ep.value.split(":")[0])


def names(kind: Kind) -> list[str]:
    _load_plugins()
    return sorted(_REGISTRY[kind])


def all_specs(kind: Kind) -> list[PluginSpec]:
    _load_plugins()
    return [_REGISTRY[kind][n] for n in sorted(_REGISTRY[kind])]


def suggest(name: str, candidates: list[str]) -> str:
    """A ' (did you mean X?)' suffix, or '' when nothing is close."""
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def get(kind: Kind, name: str) -> PluginSpec:
    """Look up a plug-in by name; unknown names raise with the nearest valid name."""
    _load_plugins()
    try:
        return _REGISTRY[kind][name]
    except KeyError:
        known = sorted(_REGISTRY[kind])
        raise UsageError(
            f"unknown {kind} {name!r}{suggest(name, known)}",
            hint=f"known {kind}s: {', '.join(known)}; see `certify list {kind}s`",
        ) from None
