"""One small registry for plug-ins, looked up by name.

Attacks, judges and evals are functions registered with a decorator that declares a
strict pydantic ``Params`` model and its metadata (summary = first docstring line,
paper link, tags, version). Sources of models, datasets and lm-eval tasks are
*providers* registered under a prefix (``builtin`` for ``builtin:NAME``); the embedded
demo registers its models, datasets, tasks and canary judge through these same doors
(``certify.demo.plugin``). Policies name plug-ins; they never name Python import paths,
so a policy file cannot run code. Built-in plug-in modules are imported on first lookup;
they keep torch imports inside function bodies, so listing and validating stay light.
Third-party packages add modules through the ``certify.plugins`` entry-point group;
those modules register with the same decorators and ``provide``.
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

ProviderKind = Literal["model", "dataset", "lm_eval_tasks"]
"""What a provider supplies: ``model`` (certify.models.source.ModelProvider), ``dataset``
(certify.data.load.DatasetProvider), ``lm_eval_tasks`` (certify.evals.capability.TaskProvider)."""

_BUILTIN_MODULES: tuple[str, ...] = (
    "certify.attacks.finetune", "certify.attacks.none", "certify.attacks.poisoned_mix",
    "certify.attacks.cipher", "certify.attacks.search", "certify.attacks.jailbreak_tuning",
    "certify.attacks.multilingual", "certify.attacks.relearning",
    "certify.attacks.refusal_ablation", "certify.attacks.embedding_attack",
    "certify.judges.keywords", "certify.judges.classifier", "certify.judges.guard",
    "certify.evals.harmfulness", "certify.evals.benign", "certify.evals.capability",
    "certify.evals.cipher_harmfulness", "certify.evals.language_harmfulness",
    "certify.evals.knowledge",
    "certify.demo.plugin",  # the embedded demo: builtin models, datasets, tasks, canary judge
)


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
            **({"cost": self.extra["cost"]} if self.kind == "attack" else {}),
            "params_schema": self.params.model_json_schema(),
        }


_REGISTRY: dict[Kind, dict[str, PluginSpec]] = {k: {} for k in KINDS}
_PROVIDERS: dict[ProviderKind, dict[str, Any]] = {"model": {}, "dataset": {}, "lm_eval_tasks": {}}
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


ATTACK_COSTS = ("steps", "samples", "optimisation_steps")
"""Units an attack's budget is counted in (see certify.attacks.contract)."""


def attack(name: str, *, params: type[Params], paper: str = "", tags: tuple[str, ...] = (),
           version: int = 1, cost: str = "steps", **extra: Any) -> Callable[[F], F]:
    """Register an attack recipe ``fn(run: AttackRun, params) -> None`` (the contract is
    certify.attacks.contract). ``cost``: the unit its budget is counted in.
    ``rewrites_prompts=True``: the recipe may rewrite evaluation prompts
    (``transform_prompts``), so its cells measure their own step 0 rather than reuse
    the baseline's answers to the plain prompts. ``trajectory="n_samples"``: the parameter
    that is the budget axis, evaluated at the checkpoints on the way (default
    ``max_steps``; a training-free edit counts samples). ``check_model=fn(params,
    attack_id, num_layers)``: called by the audit's preflight and the dry run with each
    model's decoder layer count; raises InputError (e.g. a layer out of range).
    ``checkpoint_work=fn(params, num_layers, post_tokens) -> [{"items", "extra_tokens",
    "new_tokens", "batch"}]``: forward passes and generation the recipe itself runs at
    each checkpoint beyond training and the policy's evaluations (a training-free edit's
    search for its direction), which the dry run prices like an evaluation's.
    ``blind_measures=("capability", ...)``: evaluations measuring these cannot see what
    the attack changes (a soft prompt is invisible to lm-eval); policy validation refuses
    them on its entries."""
    if cost not in ATTACK_COSTS:
        raise ValueError(f"attack {name!r}: cost must be one of {', '.join(ATTACK_COSTS)}")
    return _register("attack", name, params, paper, tags, version, {"cost": cost, **extra})


def judge(name: str, *, params: type[Params], paper: str = "", tags: tuple[str, ...] = (),
          version: int = 1, **extra: Any) -> Callable[[F], F]:
    """Register a judge factory: ``fn(params, ctx) -> Judge``."""
    return _register("judge", name, params, paper, tags, version, extra)


def evaluation(name: str, *, params: type[Params], paper: str = "", tags: tuple[str, ...] = (),
               version: int = 1, **extra: Any) -> Callable[[F], F]:
    """Register an eval factory: ``fn(params, ctx) -> Evaluator``. ``measures``: what it
    measures (checks declare what they read). ``check_inputs=fn(params, eval_id)``: called
    by the audit's preflight and by the dry run before anything runs; raises InputError
    naming the problem (e.g. an unknown lm-eval task); it reads no dataset.
    ``check_data=fn(params, eval_id)``: called by the audit's preflight only, after
    ``check_inputs``; it may read data (e.g. lm-eval tasks whose datasets are not cached)."""
    return _register("eval", name, params, paper, tags, version, extra)


def _load_plugins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)
    for ep in entry_points(group="certify.plugins"):
        importlib.import_module(ep.value.split(":")[0])


def budget_unit(technique: str) -> str:
    """What an attack's trajectory counts, in words: ``steps`` (optimizer steps), or the
    budget axis its registration declares (``trajectory="n_samples"`` reads ``samples``).
    ``steps`` for a name that is not a registered attack (an uninstalled plug-in)."""
    if technique not in names("attack"):
        return "steps"
    axis = _REGISTRY["attack"][technique].extra.get("trajectory")
    return str(axis).removeprefix("n_") if axis else "steps"


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


def provide(kind: ProviderKind, prefix: str, provider: Any) -> None:
    """Register a source of models, datasets or lm-eval tasks named ``PREFIX:NAME``."""
    existing = _PROVIDERS[kind].get(prefix)
    if existing is not None and type(existing) is not type(provider):
        raise ValueError(f"{kind} provider {prefix!r} is already registered by "
                         f"{type(existing).__module__}")
    _PROVIDERS[kind][prefix] = provider


def providers(kind: ProviderKind) -> dict[str, Any]:
    """prefix → provider, for every registered provider of ``kind``."""
    _load_plugins()
    return dict(_PROVIDERS[kind])


def split_prefix(kind: ProviderKind, spec: str) -> tuple[Any, str] | None:
    """(provider, NAME) when ``spec`` is ``PREFIX:NAME`` for a registered provider, else None."""
    prefix, sep, name = spec.partition(":")
    if not sep:
        return None
    provider = providers(kind).get(prefix)
    return (provider, name) if provider is not None else None
