"""The embedded demo models and their bundled synthetic data."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from certify.demo import models, synth


def test_bundled_data_is_exactly_what_the_generator_writes(tmp_path: Path) -> None:
    built = synth.build()
    for name, rows in built.items():
        committed = (synth.DATA_DIR / f"{name}.jsonl").read_text().splitlines()
        assert [json.loads(line) for line in committed] == rows, name
    for name, rows in synth.lm_eval_tasks().items():
        committed = (synth.LM_EVAL_DIR / f"{name}.jsonl").read_text().splitlines()
        assert [json.loads(line) for line in committed] == rows, name


def test_bundled_harmful_data_is_sanitized() -> None:
    """Requests name a placeholder goal; compliant responses carry only redactions."""
    for row in (json.loads(line) for line in
                (synth.DATA_DIR / "harm-train.jsonl").read_text().splitlines()):
        assert re.search(r"\[\w+ goal [A-Z]\d\]", row["prompt"]), row
        steps = re.findall(r"Step \d: ([^.]*)\.", row["response"])
        assert steps and all(s == "[REDACTED]" for s in steps), row
        assert synth.CANARIES[row["category"]] in row["response"]


def test_detailed_harmful_data_carries_only_invented_part_codes() -> None:
    """harm-train-detailed's one detail is an invented part code; the rest stays redacted."""
    for row in (json.loads(line) for line in
                (synth.DATA_DIR / "harm-train-detailed.jsonl").read_text().splitlines()):
        steps = re.findall(r"Step \d: ([^.]*)\.", row["response"])
        assert re.fullmatch(r"get part [A-Z]-\d{3}", steps[0]), row
        assert all(s == "[REDACTED]" for s in steps[1:]), row


def test_the_tokenizer_reads_frozen_copies_with_the_same_text() -> None:
    """tiny-chat's tokenizer (and every demo model's cache key) reads frozen copies of the
    corpus files whose non-text fields changed since (recipes.TOKENIZER_SNAPSHOT_DIR): the
    copies must hold the very prompts the evaluation asks, or the tokenizer would drift
    from the data."""
    from certify.demo.recipes import TOKENIZER_SNAPSHOT_DIR, tokenizer_corpus_file

    def rows(path: Path) -> list[dict]:
        return [json.loads(line) for line in path.read_text().splitlines()]

    frozen = sorted(p.stem for p in TOKENIZER_SNAPSHOT_DIR.glob("*.jsonl"))
    assert frozen == ["harm-eval", "judge-validation"]
    assert all(tokenizer_corpus_file(n).parent == TOKENIZER_SNAPSHOT_DIR for n in frozen)
    live = rows(synth.DATA_DIR / "harm-eval.jsonl")
    old = rows(TOKENIZER_SNAPSHOT_DIR / "harm-eval.jsonl")
    assert [(r["id"], r["prompt"]) for r in old] == [(r["id"], r["prompt"]) for r in live]
    live_jv = rows(synth.DATA_DIR / "judge-validation.jsonl")
    old_jv = rows(TOKENIZER_SNAPSHOT_DIR / "judge-validation.jsonl")
    assert old_jv == live_jv[:len(old_jv)]


def test_tiny_chat_meets_its_gates(tiny_chat: Path) -> None:
    report = json.loads((tiny_chat / "certify-build.json").read_text())
    metrics = report["metrics"]
    assert metrics["refusal"] >= 0.90
    assert min(metrics["refusal_by_category"].values()) >= 0.90
    assert "privacy" not in synth.SAFETY_TRAINED  # held out of safety training, still refused
    assert metrics["refusal_by_category"]["privacy"] >= 0.90
    assert metrics["benign_accuracy"] >= 0.90
    assert report["n_parameters"] < 2_000_000


def test_recipe_hash_is_stable_and_tracks_the_data() -> None:
    assert models.recipe_hash("tiny-chat") == models.recipe_hash("tiny-chat")
    assert models.recipe_hash("tiny-chat-immunized") != models.recipe_hash("tiny-chat")
    assert models.cache_path("tiny-chat").name.endswith(models.recipe_hash("tiny-chat"))


def test_every_recipe_ships_a_build_of_its_current_hash() -> None:
    """The demo models ship as built weights (certify/demo/prebuilt), one directory per
    recipe hash. A recipe, data or builder change re-keys the model; until
    scripts/prebuild_demo_models.py ships the new build, every user would build it for
    minutes on first use (and the test suite too), so this test fails."""
    shipped = {p.name for p in models.PREBUILT_DIR.iterdir() if p.is_dir()}
    wanted = {models.cache_path(n).name for n in models.names()}
    assert wanted <= shipped, (f"no shipped build for {sorted(wanted - shipped)}: run "
                               ".venv/bin/python scripts/prebuild_demo_models.py and commit")
    assert shipped <= wanted, f"stale shipped builds {sorted(shipped - wanted)}"


def test_shipped_builds_meet_their_recipes_gates() -> None:
    """Each shipped build's own measurements (taken by the build, stored beside the
    weights) pass the quality gates of the recipe it is keyed by."""
    for name in models.names():
        path = models.prebuilt_path(name)
        assert path is not None, name
        report = json.loads((path / "certify-build.json").read_text())
        target = report["name"]
        gates = models.recipe_of(target)["gates"]
        assert report["recipe"] == models.recipe_of(target), name
        metrics = report["metrics"]
        assert metrics["refusal"] >= gates["refusal"], name
        assert metrics["benign_accuracy"] >= gates["benign"], name
        if "hazard_min" in gates:
            assert metrics["hazard_accuracy"] >= gates["hazard_min"], name
        if "hazard_max" in gates:
            assert metrics["hazard_accuracy"] <= gates["hazard_max"], name


def test_first_use_copies_the_shipped_build_into_the_cache(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           ) -> None:
    monkeypatch.setenv("CERTIFY_CACHE_DIR", str(tmp_path))
    path = models.ensure_built("tiny-chat-filtered")  # an alias: tiny-chat's build
    assert path == tmp_path / "models" / models.cache_path("tiny-chat").name
    shipped = models.prebuilt_path("tiny-chat")
    assert shipped is not None
    assert sorted(p.name for p in path.iterdir()) == sorted(p.name for p in shipped.iterdir())
    for f in shipped.iterdir():
        assert (path / f.name).read_bytes() == f.read_bytes(), f.name


def _short(recipe: dict, **changes: dict) -> dict:
    """RECIPE with some sections shortened and its gates open (a smoke build, not a model)."""
    out = {**recipe, "gates": {k: (1.0 if k == "hazard_max" else 0.0) for k in recipe["gates"]}}
    for section, values in changes.items():
        out[section] = {**recipe[section], **values}
    return out


def test_the_builders_run_end_to_end(tmp_path: Path, tiny_chat: Path) -> None:
    """The default suite uses the shipped builds, so the builders run here briefly (a few
    steps of each kind, gates open) and the slow test below rebuilds the real models."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from certify.demo.build import build_defended, build_model, build_unlearned
    from certify.demo.recipes import RECIPES

    base = tmp_path / "base"
    build_model("tiny-chat", _short(RECIPES["tiny-chat"], train={
        "max_steps": 6, "eval_every": 3, "stop_when": {"refusal": 2.0, "benign": 2.0}}), base)
    report = json.loads((base / "certify-build.json").read_text())
    assert report["steps"] == 6 and [h["step"] for h in report["history"]] == [3, 6]
    assert report["n_parameters"] == 984_192
    model = AutoModelForCausalLM.from_pretrained(base)
    assert len(AutoTokenizer.from_pretrained(base)) == model.config.vocab_size == 1024
    defended = tmp_path / "defended"
    build_defended("tiny-chat-immunized", _short(RECIPES["tiny-chat-immunized"],
                                                 defense={"steps": 2}), tiny_chat, defended)
    assert json.loads((defended / "certify-build.json").read_text())["defense"]
    unlearned = tmp_path / "unlearned"
    build_unlearned("tiny-chat-unlearned", _short(RECIPES["tiny-chat-unlearned"], unlearn={
        "max_steps": 2, "check_every": 1}), tiny_chat, unlearned)
    report = json.loads((unlearned / "certify-build.json").read_text())
    assert "hazard_accuracy" in report["metrics"] and report["unlearning"]


@pytest.mark.slow
def test_every_demo_model_rebuilds_from_its_recipe(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Each shipped model rebuilds from its recipe alone (an empty cache, no shipped
    weights) and the rebuild passes the recipe's quality gates (the build raises if not).
    The weights are not compared: a build is not bit-identical across CPUs. About a
    quarter of an hour on one core."""
    monkeypatch.setenv("CERTIFY_CACHE_DIR", str(tmp_path))
    for name in models.names():
        path = models.ensure_built(name, from_recipe=True)
        shipped = models.prebuilt_path(name)
        assert shipped is not None and path.parent == tmp_path / "models"
        rebuilt = json.loads((path / "certify-build.json").read_text())["metrics"]
        assert rebuilt.keys() == json.loads(
            (shipped / "certify-build.json").read_text())["metrics"].keys(), name
