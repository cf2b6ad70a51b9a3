"""Rebuild the demo models' shipped weights (certify/demo/prebuilt) from their recipes.

    .venv/bin/python scripts/prebuild_demo_models.py          # only what changed
    .venv/bin/python scripts/prebuild_demo_models.py --force  # every model, from scratch

Run it after changing a recipe (certify/demo/recipes.py), the bundled data a recipe
hashes, or the builder: each model is keyed by its recipe hash, and a default test
(tests/test_demo.py) fails while a recipe has no shipped build for its current hash.
A model whose shipped build is current is kept unless ``--force``; a changed one is
built from its recipe (a build from an unchanged base starts from the shipped base).
Shipped builds of old hashes are deleted. Builds take minutes of CPU each (about a
quarter of an hour for all four on one core): commit the result.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true",
                        help="rebuild every model from its recipe in an empty cache")
    args = parser.parse_args()
    if args.force:
        os.environ["CERTIFY_CACHE_DIR"] = tempfile.mkdtemp(prefix="certify-prebuild-")
    from certify.demo import models

    models.PREBUILT_DIR.mkdir(exist_ok=True)
    keep: set[str] = set()
    for name in models.names():
        if models.recipe_of(name).get("same_as"):
            continue  # an alias ships as its target's build
        target = models.PREBUILT_DIR / f"{name}-{models.recipe_hash(name)}"
        keep.add(target.name)
        if models.prebuilt_path(name) is not None and not args.force:
            print(f"{name}: current ({target.name})")
            continue
        built = models.ensure_built(name, from_recipe=True)
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(built, tmp)
        for f in tmp.iterdir():
            f.chmod(0o644)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
        print(f"{name}: built {target.name}")
    for stale in sorted(models.PREBUILT_DIR.iterdir()):
        if stale.is_dir() and stale.name not in keep:
            shutil.rmtree(stale)
            print(f"removed {stale.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
