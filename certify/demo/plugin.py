"""The embedded demo world, registered through the same doors as a user's plug-ins.

- models ``builtin:NAME`` (certify.demo.models: shipped builds of their recipes, copied
  to the cache on first use),
- datasets ``builtin:NAME`` (the bundled synthetic files in certify/demo/data),
- the offline lm-eval tasks ``certify_tiny_capability`` and ``certify_hazard_mc`` (the
  synthetic hazard domain's 64 evaluated facts; certify/demo/lm_eval),
- the ``canary`` judge (certify.demo.canary).

Nothing in the core imports this package; the registry loads it as a built-in plug-in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from certify import registry
from certify._io import cache_root
from certify.demo import canary, models
from certify.demo.recipes import DATA_DIR, LM_EVAL_DIR

__all__ = ["BuiltinDatasets", "BuiltinModels", "BuiltinTasks", "canary"]


class BuiltinModels:
    """``builtin:NAME``: the demo chat models, built from their recipes (shipped) and cached."""

    def names(self) -> list[str]:
        return models.names()

    def locate(self, name: str, *, build: bool) -> tuple[Path, str | None]:
        path = models.ensure_built(name) if build else models.cache_path(name)
        return path, models.recipe_hash(name)

    def shape(self, name: str) -> tuple[dict[str, Any], str, Path | None]:
        arch = models.architecture_of(name)
        config = {"model_type": "llama", "vocab_size": arch["tokenizer"]["vocab_size"],
                  "dtype": "float32", **arch["model"]}
        # The shipped build, or one built earlier, has a tokenizer to count tokens with;
        # never build one here.
        shipped = models.prebuilt_path(name)
        if shipped is not None:
            return config, "builtin recipe (certify/demo/recipes.py)", shipped / "tokenizer.json"
        built = sorted((cache_root() / "models").glob(f"{name}-*/tokenizer.json"),
                       key=lambda p: p.stat().st_mtime)
        return config, "builtin recipe (certify/demo/recipes.py)", built[-1] if built else None


class BuiltinDatasets:
    """``builtin:NAME``: the bundled synthetic datasets."""

    licence = "Apache-2.0 (synthetic, bundled with certify)"

    def names(self) -> list[str]:
        return sorted(p.stem for p in DATA_DIR.glob("*.jsonl"))

    def path(self, name: str) -> Path:
        return DATA_DIR / f"{name}.jsonl"


class BuiltinTasks:
    """The demo's offline lm-eval tasks."""

    def task_dir(self) -> Path:
        return LM_EVAL_DIR


registry.provide("model", "builtin", BuiltinModels())
registry.provide("dataset", "builtin", BuiltinDatasets())
registry.provide("lm_eval_tasks", "builtin", BuiltinTasks())
