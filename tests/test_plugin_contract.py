"""One contract over every registered plug-in: documented, strict, valid by default, light."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from certify import registry
from tests.conftest import ROOT

SPECS = [s for kind in registry.KINDS for s in registry.all_specs(kind)]
IDS = [f"{s.kind}:{s.name}" for s in SPECS]
HEAVY = ("torch", "transformers", "peft", "lm_eval", "weasyprint", "datasets")


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_plugin_is_documented(spec: registry.PluginSpec) -> None:
    assert len(spec.summary) >= 20, f"{spec.name}: docstring summary missing or too short"
    assert not spec.summary.endswith(":"), spec.summary
    assert spec.paper == "" or spec.paper.startswith("https://"), spec.paper
    assert spec.version >= 1


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_plugin_params_are_strict_and_defaults_validate(spec: registry.PluginSpec) -> None:
    assert spec.params.model_config.get("extra") == "forbid"
    defaults = spec.params.model_validate({})
    # The defaults survive a JSON round trip: cell ids hash the dumped parameters.
    assert spec.params.model_validate(defaults.model_dump(mode="json")) == defaults
    with pytest.raises(ValidationError, match="no_such_parameter"):
        spec.params.model_validate({"no_such_parameter": 1})


@pytest.mark.parametrize("module", sorted({s.module for s in SPECS}))
def test_plugin_module_imports_without_heavy_packages(module: str) -> None:
    probe = (f"import sys, {module}\n"
             f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("kind", ["attacks", "judges", "evals"])
def test_list_shows_every_plugin_with_summary_paper_and_params(kind: str) -> None:
    from certify.cli import cli

    result = CliRunner().invoke(cli, ["list", kind])
    assert result.exit_code == 0, result.output
    for spec in registry.all_specs(kind[:-1]):  # type: ignore[arg-type]
        assert f"{spec.name}  (v{spec.version})  {spec.summary}" in result.output
        if spec.paper:
            assert f"paper: {spec.paper}" in result.output
        for field in spec.params.model_fields:
            assert f"    {field}" in result.output


def test_new_techniques_are_registered() -> None:
    assert {"poisoned_mix", "cipher", "search", "sft", "lora", "jailbreak_tuning",
            "multilingual", "refusal_ablation", "embedding_attack"} <= set(
        registry.names("attack"))
    assert {"classifier", "guard", "keywords", "canary"} <= set(registry.names("judge"))
    assert {"cipher_harmfulness", "language_harmfulness"} <= set(registry.names("eval"))


@pytest.mark.parametrize("spec", registry.all_specs("attack"), ids=lambda s: s.name)
def test_attack_follows_the_contract(spec: registry.PluginSpec) -> None:
    """Typed against AttackRun (mypy --strict checks the body) and declares its cost unit."""
    import inspect
    import typing

    from certify.attacks.contract import AttackRun

    hints = typing.get_type_hints(spec.fn)
    first = next(iter(inspect.signature(spec.fn).parameters))
    assert hints[first] is AttackRun, f"{spec.name}: its first parameter must be an AttackRun"
    assert spec.extra["cost"] in registry.ATTACK_COSTS
    assert spec.describe()["cost"] == spec.extra["cost"]


def test_every_check_kind_is_declared_once() -> None:
    """A schema class per kind, each with what it reads and one CheckKind entry."""
    from certify.assess.kinds import KINDS
    from certify.policy import schema

    assert list(KINDS) == list(schema.CHECK_KINDS)
    for name, kind in KINDS.items():
        assert kind.schema in schema.CHECK_CLASSES
        assert kind.schema.model_fields["check"].annotation.__args__[0] == name
        reads = kind.schema.reads
        assert reads.measures, name
        # Early stopping may only conclude about cells the kind reads along trajectories.
        assert kind.settled is None or (reads.roles and reads.purpose), name


@pytest.mark.parametrize("kind", ["model", "dataset", "lm_eval_tasks"])
def test_the_demo_comes_in_through_the_provider_doors(kind: str) -> None:
    from certify.demo import plugin

    provider = registry.providers(kind)["builtin"]  # type: ignore[arg-type]
    assert type(provider).__module__ == plugin.__name__
    assert registry.get("judge", "canary").module == "certify.demo.canary"
