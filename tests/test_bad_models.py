"""Bad models and bad data: each is refused with a clear message and exit 2 before any cell
runs; the opt-in flags (--allow-pickle, --trust-remote-code) make the same files load
and measure exactly what the safetensors model measures; a tokenizer without a chat
template uses the documented plain format and the evidence says so.

The rule (docs/reliability.md): every model and dataset problem is an input error,
exit 2, found before the run directory exists (models, and datasets the attacks train
on) or at the latest before the first cell runs (fields an evaluation needs). A budget
point asking for more rows than a dataset has is the one data problem that is a cell
error (`not_enough_data`, exit 3): it concerns one cell, not the input.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from certify.evidence import Evidence
from certify.models.chat import FALLBACK_TEMPLATE
from tests.conftest import ROOT, run_certify
from tests.test_fault_injection import ENV, POLICY, reference_run

DATA = ROOT / "certify" / "demo" / "data"


@pytest.fixture(scope="module")
def reference(tiny_chat: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return reference_run(tmp_path_factory)


def _model_copy(tiny_chat: Path, dest: Path) -> Path:
    shutil.copytree(tiny_chat, dest)
    return dest


@pytest.fixture(scope="module")
def models(tiny_chat: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Damaged and unusual copies of the demo model."""
    import torch
    from safetensors.torch import load_file

    base = tmp_path_factory.mktemp("models")
    out: dict[str, Path] = {}
    truncated = _model_copy(tiny_chat, base / "truncated")
    weights = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    out["truncated"] = truncated

    pickled = _model_copy(tiny_chat, base / "pickle-only")
    torch.save(load_file(pickled / "model.safetensors"), pickled / "pytorch_model.bin")
    (pickled / "model.safetensors").unlink()
    out["pickle"] = pickled

    custom = _model_copy(tiny_chat, base / "custom-code")
    (custom / "configuration_tiny.py").write_text(CUSTOM_CONFIG)
    (custom / "modeling_tiny.py").write_text(CUSTOM_MODEL)
    config = json.loads((custom / "config.json").read_text())
    config.update(model_type="tiny-custom", architectures=["TinyCustomForCausalLM"], auto_map={
        "AutoConfig": "configuration_tiny.TinyCustomConfig",
        "AutoModelForCausalLM": "modeling_tiny.TinyCustomForCausalLM"})
    (custom / "config.json").write_text(json.dumps(config, indent=2))
    out["custom"] = custom

    plain = _model_copy(tiny_chat, base / "no-chat-template")
    (plain / "chat_template.jinja").unlink()
    assert "chat_template" not in (plain / "tokenizer_config.json").read_text()
    out["no_template"] = plain

    no_config = _model_copy(tiny_chat, base / "no-config")
    (no_config / "config.json").unlink()
    out["no_config"] = no_config
    return out


CUSTOM_CONFIG = """from transformers import LlamaConfig


class TinyCustomConfig(LlamaConfig):
    model_type = "tiny-custom"
"""
CUSTOM_MODEL = """import os
from pathlib import Path

from transformers import LlamaForCausalLM

from .configuration_tiny import TinyCustomConfig

# Proof that this file ran: certify may run it only with --trust-remote-code.
Path(os.environ["CERTIFY_TEST_REMOTE_CODE_MARKER"]).write_text("executed")


class TinyCustomForCausalLM(LlamaForCausalLM):
    config_class = TinyCustomConfig
"""


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("data")
    harm = [json.loads(line) for line in (DATA / "harm-train.jsonl").read_text().splitlines()]
    benign = [json.loads(line) for line in (DATA / "benign-eval.jsonl").read_text().splitlines()]

    def write(name: str, rows: list[dict[str, Any]] | str) -> Path:
        path = base / name
        path.write_text(rows if isinstance(rows, str)
                        else "".join(json.dumps(r) + "\n" for r in rows))
        return path

    return {
        "no_response": write("no-response.jsonl", [
            {k: v for k, v in r.items() if not (i == 3 and k == "response")}
            for i, r in enumerate(harm[:30])]),
        "no_prompt": write("no-prompt.jsonl", [
            {k: v for k, v in r.items() if not (i == 5 and k == "prompt")}
            for i, r in enumerate(harm[:30])]),
        "empty": write("empty.jsonl", ""),
        "bad_json": write("bad-json.jsonl", json.dumps(harm[0]) + "\n{\"prompt\": \n"),
        "no_answer": write("no-answer.jsonl", [
            {k: v for k, v in r.items() if not (i == 2 and k == "answer")}
            for i, r in enumerate(benign[:12])]),
    }


def _policy(tmp: Path, name: str, attack_data: str | Path = "builtin:harm-train",
            benign_data: Path | None = None) -> Path:
    """fault-tiny with other attack data, or with a benign evaluation at the LoRA cell's end."""
    text = POLICY.read_text().replace(
        "dataset: builtin:harm-train, categories: [weapons, cyber]", f"dataset: {attack_data}")
    if benign_data is not None:
        text = text.replace("\nchecks:", f"\n  benign: {{eval: benign_accuracy, params: "
                            f"{{dataset: {benign_data}, max_new_tokens: 8}}}}\nbaseline: [harm]"
                            "\nchecks:")
        text = text.replace("    checkpoints: final\n",
                            "    checkpoints: final\n    evaluate_final: [benign]\n")
    path = tmp / f"{name}.yaml"
    path.write_text(text)
    return path


# One interpreter runs `certify audit` on every bad input and reports, for each, the exit
# code, stderr, and whether the run directory has any cell result.
PROBE = """
import contextlib, io, json, os, sys
from pathlib import Path
from certify.cli import main
results = {}
for name, args in json.loads(sys.argv[1]).items():
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            main(["audit", *args, "--format", "md", "--quiet"])
            code = 0
        except SystemExit as e:
            code = e.code
    out = Path(args[args.index("--out") + 1])
    results[name] = [code, err.getvalue(), out.exists(), sorted(p.name for p in
                                                                 out.glob("cells/*.json"))]
print(json.dumps(results))
"""


def test_bad_models_and_data_are_refused_before_any_cell_runs(
        models: dict[str, Path], datasets: dict[str, Path], tmp_path: Path,
        record_property: Any) -> None:
    marker = tmp_path / "remote-code-ran"
    run = tmp_path / "runs"
    model = "builtin:tiny-chat"
    cases: dict[str, tuple[list[str], list[str]]] = {
        "missing-path": ([str(tmp_path / "no-such-model"), "--policy", str(POLICY)],
                         ["not found", "hint:"]),
        "not-a-model-file": ([str(POLICY), "--policy", str(POLICY)], ["not a .gguf file"]),
        "no-config": ([str(models["no_config"]), "--policy", str(POLICY)], ["no config.json"]),
        "truncated-safetensors": ([str(models["truncated"]), "--policy", str(POLICY)],
                                  ["model.safetensors is truncated", "download"]),
        "pickle-only": ([str(models["pickle"]), "--policy", str(POLICY)],
                        ["only pickle weights", "pytorch_model.bin", "--allow-pickle"]),
        "custom-code": ([str(models["custom"]), "--policy", str(POLICY)],
                        ["custom Python code", "--trust-remote-code"]),
        "rows-missing-response": ([model, "--policy", str(_policy(
            tmp_path, "a", datasets["no_response"]))], ["row 4", "has no 'response' field"]),
        "rows-missing-prompt": ([model, "--policy", str(_policy(
            tmp_path, "b", datasets["no_prompt"]))], ["row 6 has no prompt", "fields:"]),
        "empty-dataset": ([model, "--policy", str(_policy(tmp_path, "c", datasets["empty"]))],
                          ["empty"]),
        "malformed-jsonl": ([model, "--policy", str(_policy(
            tmp_path, "d", datasets["bad_json"]))], ["line 2 is not valid JSON"]),
        "missing-dataset-file": ([model, "--policy", str(_policy(
            tmp_path, "e", tmp_path / "nowhere.jsonl"))], ["does not exist"]),
        "eval-rows-missing-answer": ([model, "--policy", str(_policy(
            tmp_path, "f", benign_data=datasets["no_answer"]))], ["has no 'answer' field"]),
    }
    args = {name: [*a, "--out", str(run / name)] for name, (a, _) in cases.items()}
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args)], capture_output=True,
                          text=True, cwd=ROOT, env={**ENV, **_env(tmp_path, marker)})
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout.splitlines()[-1])
    for name, (_, needles) in cases.items():
        code, err, run_dir_exists, cells = results[name]
        assert code == 2, f"{name}: exit {code}\n{err}"
        assert err.startswith("error: ") and "Traceback" not in err, f"{name}: {err}"
        for needle in needles:
            assert needle in err, f"{name}: {needle!r} not in {err}"
        assert cells == [], f"{name}: cells ran before the error: {cells}"
        if name != "eval-rows-missing-answer":  # found when its evaluator is built
            assert not run_dir_exists, f"{name}: a run directory was created"
    assert not marker.exists(), "the model's custom code ran without --trust-remote-code"
    record_property("inputs_tried", len(cases))
    record_property("inputs_handled", len(cases))


def _env(tmp_path: Path, marker: Path) -> dict[str, str]:
    return {**os.environ, "CERTIFY_TEST_REMOTE_CODE_MARKER": str(marker),
            "HF_MODULES_CACHE": str(tmp_path / "hf-modules")}


def _by_attack(ev: Evidence) -> dict[str, Any]:
    """Per-attack measurements and the verdict, independent of the model's digest."""
    assert ev.verdict is not None
    return {"verdict": ev.verdict.overall,
            "cells": {c.attack_id: [cp.model_dump(exclude={"seconds"}) for cp in c.checkpoints]
                      for c in ev.cells}}


@pytest.mark.parametrize("variant,flag", [
    ("pickle", "--allow-pickle"),
    pytest.param("custom", "--trust-remote-code", marks=pytest.mark.slow),
    pytest.param("no_template", None, marks=pytest.mark.slow),
])
def test_opt_ins_and_fallback_measure_what_the_original_measures(
        variant: str, flag: str | None, models: dict[str, Path], reference: Any,
        tmp_path: Path) -> None:
    marker = tmp_path / "remote-code-ran"
    out = tmp_path / "run"
    result = run_certify("audit", str(models[variant]), "--policy", str(POLICY), "--out",
                         str(out), "--format", "md", "--quiet", *([flag] if flag else []),
                         env={**ENV, **_env(tmp_path, marker)})
    assert result.returncode == reference[2], result.stderr
    ev = Evidence.read(out / "evidence.json")
    # Same weights, and the demo model's chat template is the plain fallback format, so
    # every number must equal the reference run's.
    assert _by_attack(ev) == _by_attack(Evidence.read(reference[0] / "evidence.json"))
    templates = {c.notes["chat_template"] for c in ev.cells}
    if variant == "no_template":
        assert templates == {FALLBACK_TEMPLATE}
    else:
        assert len(templates) == 1 and templates.pop().startswith("chat_template sha256:")
    assert marker.exists() == (variant == "custom")
