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
    assert {"poisoned_mix", "cipher", "search", "sft", "lora"} <= set(registry.names("attack"))
    assert {"classifier", "guard", "keywords", "canary"} <= set(registry.names("judge"))
    assert "cipher_harmfulness" in registry.names("eval")
