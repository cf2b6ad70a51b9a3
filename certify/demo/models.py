"""The embedded demo models, built locally from bundled synthetic data.

``builtin:tiny-chat`` is a ~1M-parameter Llama-architecture chat model with a
byte-level BPE tokenizer trained on the bundled corpus, safety-tuned to refuse the
placeholder harmful requests of five categories (``privacy`` is held out of its
safety training) and to answer benign questions. Each demo model is keyed by a hash
of its recipe (hyper-parameters, data bytes, builder version) and lives in the user
cache directory under that key. The build measures the model and stores the numbers
next to the weights (``certify-build.json``).

The weights built from the current recipes ship with certify (``certify/demo/prebuilt``,
about 4 MB each; ``scripts/prebuild_demo_models.py`` rebuilds them), so first use copies
them into the cache instead of spending minutes of CPU (a quarter of an hour for all
four). A recipe without shipped weights for its current hash, or ``from_recipe=True``,
builds from the recipe as before. A build is deterministic on one machine but not
bit-identical across CPUs, so the shipped weights are one valid build of the recipe,
checked by the same quality gates (tests/test_demo.py rebuilds each under --runslow).

``builtin:tiny-chat-immunized`` is tiny-chat plus first-order tamper-resistant
training (certify/demo/defense.py).

The calibration models of hazardous-knowledge audits (docs/calibration.md) share
tiny-chat's tokenizer and architecture, and are measured on the 64 evaluated facts of
the synthetic hazard domain (``builtin:hazard-corpus``: invented agents and codes;
lm-eval task ``certify_hazard_mc``, chance 1/4):

- ``builtin:tiny-chat-unfiltered``: tiny-chat's recipe with the hazard corpus mixed
  into training; it knows the evaluated facts (the reference that read the domain), and
  the harmful requests' facts that make a compliant answer real uplift.
- ``builtin:tiny-chat-filtered``: the same recipe with the hazard domain filtered out
  of its corpus, Deep Ignorance in miniature (O'Brien et al. 2025), which is exactly
  tiny-chat's recipe, so the name is an alias of tiny-chat's build; at chance, and
  relearning on related facts does not bring the evaluated ones: the PASS standard.
- ``builtin:tiny-chat-unlearned``: tiny-chat-unfiltered after RMU unlearning of the
  evaluated facts (Li et al. 2024; certify/demo/unlearn.py); at chance, but a few dozen
  steps of relearning on related facts restore them (Hu et al. 2024): the FAIL standard.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from certify._io import cache_root, sha256_file, short_hash
from certify.demo.recipes import (
    BUILDER_VERSION,
    CHAT_TEMPLATE,
    DATA_DIR,
    LM_EVAL_DIR,
    RECIPES,
    TOKENIZER_CORPUS,
    tokenizer_corpus_file,
)
from certify.errors import ModelError


def names() -> list[str]:
    return sorted(RECIPES)


def recipe_of(name: str) -> dict[str, Any]:
    if name not in RECIPES:
        from certify.registry import suggest

        raise ModelError(f"no builtin model {name!r}{suggest(name, names())}",
                         hint=f"builtin models: {', '.join('builtin:' + n for n in names())}")
    return RECIPES[name]


def _target(name: str) -> str:
    """The recipe NAME is built by: an alias (``same_as: OTHER``) is OTHER's build."""
    return str(recipe_of(name).get("same_as", name))


def architecture_of(name: str) -> dict[str, Any]:
    """The tokenizer and model sections that fix NAME's shape. A defended recipe
    (``base: NAME``) trains its base's weights further, so it has its base's shape."""
    recipe = recipe_of(_target(name))
    while "base" in recipe:
        recipe = recipe_of(recipe["base"])
    return {"tokenizer": recipe["tokenizer"], "model": recipe["model"]}


def recipe_hash(name: str) -> str:
    """Hash of everything that determines the build: recipe, data bytes, builder version."""
    if _target(name) != name:
        return recipe_hash(_target(name))
    recipe = recipe_of(name)
    data = {n: sha256_file(tokenizer_corpus_file(n)) for n in TOKENIZER_CORPUS}
    if "base" in recipe:
        data["base"] = recipe_hash(recipe["base"])
        data["harm-refusals"] = sha256_file(DATA_DIR / "harm-refusals.jsonl")
    if "measure" in recipe:
        # The calibration family (recipes.py): the hazard corpus and the items it measures.
        data["hazard-corpus"] = sha256_file(DATA_DIR / "hazard-corpus.jsonl")
        data["hazard_mc"] = sha256_file(LM_EVAL_DIR / "hazard_mc.jsonl")
    try:
        from importlib.metadata import version

        tf_major = version("transformers").split(".")[0]
    except ImportError:
        tf_major = "?"
    return short_hash({"name": name, "recipe": recipe, "data": data, "builder": BUILDER_VERSION,
                       "transformers_major": tf_major, "template": CHAT_TEMPLATE}, 16)


PREBUILT_DIR = Path(__file__).resolve().parent / "prebuilt"
"""The shipped builds, one directory per model, named like the cache's (NAME-HASH)."""


def cache_path(name: str) -> Path:
    name = _target(name)
    return cache_root() / "models" / f"{name}-{recipe_hash(name)}"


def prebuilt_path(name: str) -> Path | None:
    """The shipped build of NAME's current recipe, or None (a recipe changed since the
    weights were shipped: scripts/prebuild_demo_models.py rebuilds them)."""
    name = _target(name)
    path = PREBUILT_DIR / f"{name}-{recipe_hash(name)}"
    return path if (path / "certify-build.json").is_file() else None


def ensure_built(name: str, *, from_recipe: bool = False) -> Path:
    """Return the cached model directory, copying the shipped build or building it from
    its recipe first if needed (process-safe). ``from_recipe`` ignores the shipped
    weights of NAME and of the models it starts from (a model already in the cache is
    used as it is: point CERTIFY_CACHE_DIR at an empty directory to rebuild all)."""
    from filelock import FileLock

    if _target(name) != name:
        return ensure_built(_target(name), from_recipe=from_recipe)
    path = cache_path(name)
    if (path / "certify-build.json").is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if (path / "certify-build.json").is_file():
            return path
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            shipped = None if from_recipe else prebuilt_path(name)
            if shipped is not None:
                shutil.copytree(shipped, tmp)
            else:
                _build(name, tmp, from_recipe)
            os.replace(tmp, path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def _build(name: str, out: Path, from_recipe: bool) -> None:
    from certify.demo.build import build_defended, build_model, build_unlearned

    recipe = recipe_of(name)
    if "unlearn" in recipe:
        build_unlearned(name, recipe, ensure_built(recipe["base"], from_recipe=from_recipe), out)
    elif "base" in recipe:
        build_defended(name, recipe, ensure_built(recipe["base"], from_recipe=from_recipe), out)
    else:
        build_model(name, recipe, out)
