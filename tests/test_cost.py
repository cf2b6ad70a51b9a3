"""The dry-run plan preview: model size from configs, cells, tokens, FLOP, memory, feasibility."""

from __future__ import annotations

import itertools
import json
import os
import shutil
from pathlib import Path

import pytest

from certify import registry
from certify.conductor import AuditOptions
from certify.cost import dry_run
from certify.cost.hardware import Hardware
from certify.cost.shape import count_parameters, model_shape
from certify.errors import ModelError
from certify.plan import make_plan
from certify.policy.load import load_policy
from tests.conftest import ROOT, run_certify

LLAMA7B = ROOT / "tests" / "fixtures" / "llama-2-7b"
REGULATORY = ["sb1047", "sb53", "eu-ai-act-gpai", "nist-800-1"]
GIB = 1 << 30


def machine(device: str = "cpu", memory_gib: float = 24, rate: float = 50e9,
            host_gib: float | None = None) -> Hardware:
    """A fixed machine, so estimates are deterministic (the real one is measured)."""
    host = int((host_gib or memory_gib) * GIB)
    return Hardware(device, "test machine", 2, int(memory_gib * GIB), int(memory_gib * GIB),
                    host, host, rate, rate, "fixed for the test")


def llama_params(cfg: dict) -> int:
    """Llama parameters written out by hand: embeddings, 32 blocks, final norm, untied head."""
    h, inter, vocab, layers = (cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"],
                               cfg["num_hidden_layers"])
    block = 4 * h * h + 3 * h * inter + 2 * h
    return vocab * h + layers * block + h + vocab * h


# --------------------------------------------------------------------------- model size

def test_llama2_7b_config_gives_its_published_size() -> None:
    cfg = json.loads((LLAMA7B / "config.json").read_text())
    shape = model_shape(str(LLAMA7B))
    assert shape.n_params == llama_params(cfg) == 6_738_415_616
    assert (shape.hidden, shape.layers, shape.vocab, shape.kv_dim) == (4096, 32, 32000, 4096)


SMALL = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
         "intermediate_size": 96, "vocab_size": 300}


@pytest.mark.parametrize("model_type,extra", [
    ("llama", {"num_key_value_heads": 2}),
    ("mistral", {"num_key_value_heads": 2}),
    ("qwen2", {"num_key_value_heads": 2}),
    ("gemma", {"num_key_value_heads": 1, "head_dim": 32}),
    ("phi3", {"num_key_value_heads": 2, "pad_token_id": 0}),
    ("mixtral", {"num_key_value_heads": 2, "num_local_experts": 4, "num_experts_per_tok": 2}),
    ("gpt_neox", {}),
    ("gpt2", {"n_embd": 64, "n_layer": 2, "n_head": 4, "n_positions": 128}),
    ("opt", {"ffn_dim": 96, "max_position_embeddings": 128, "word_embed_proj_dim": 64}),
])
def test_parameter_count_matches_transformers(model_type: str, extra: dict) -> None:
    """The config formula against the real model classes, built on the meta device."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    kwargs = extra if model_type == "gpt2" else {**SMALL, **extra}
    config = AutoConfig.for_model(model_type, **kwargs)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    real = sum(p.numel() for p in model.parameters())
    as_saved = {**config.to_diff_dict(), "model_type": model_type}
    total, active = count_parameters(as_saved)
    assert total == real
    if model_type == "mixtral":  # 2 of 4 experts per token
        experts = 2 * 3 * 64 * 96 * 2
        assert active == total - experts


def test_builtin_model_size_comes_from_its_recipe_and_matches_the_weights(tiny_chat: Path,
                                                                       ) -> None:
    import math

    from safetensors import safe_open

    with safe_open(str(tiny_chat / "model.safetensors"), framework="numpy") as f:
        names = list(f.keys())
        stored = sum(math.prod(f.get_slice(name).get_shape()) for name in names)
    shape = model_shape("builtin:tiny-chat")
    assert shape.n_params == stored == 984_192
    assert shape.source.startswith("builtin recipe")


@pytest.mark.parametrize("policy", ["ci-smoke", *REGULATORY])
@pytest.mark.parametrize("name", ["tiny-chat", "tiny-chat-immunized"])
def test_every_builtin_model_has_a_dry_run_shape_with_every_policy(name: str,
                                                                    policy: str) -> None:
    """A defended recipe names its base instead of repeating the architecture; the dry run
    reads the base's shape (it once read ``recipe["tokenizer"]`` and raised KeyError)."""
    report = dry_run(opts(f"builtin:{name}", policy), machine=machine())
    assert report.model["parameters"] == 984_192
    assert report.totals["cells"] > 0


def test_gguf_size_from_its_tensor_index(tmp_path: Path) -> None:
    import numpy as np
    from gguf import GGUFWriter

    path = tmp_path / "tiny.gguf"
    writer = GGUFWriter(str(path), "llama")
    writer.add_embedding_length(64)
    writer.add_block_count(2)
    writer.add_head_count(4)
    writer.add_context_length(128)
    writer.add_feed_forward_length(96)
    writer.add_tensor("token_embd.weight", np.zeros((300, 64), dtype=np.float32))
    writer.add_tensor("blk.0.ffn_up.weight", np.zeros((96, 64), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    shape = model_shape(str(path))
    assert shape.n_params == 300 * 64 + 96 * 64
    assert (shape.hidden, shape.layers, shape.ffn, shape.vocab) == (64, 2, 96, 300)


def test_hub_id_is_read_from_the_local_cache_only(tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    repo = cache / "models--acme--llama-7b"
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text((LLAMA7B / "config.json").read_text())
    env = {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    # ci-smoke, not a regulatory policy: the model is found the same way, and the dry run
    # does not spend ~10 s indexing lm-eval's tasks for WMDP.
    out = run_certify("audit", "acme/llama-7b", "--policy", "ci-smoke", "--dry-run", "--json",
                      env=env)
    report = json.loads(out.stdout)
    assert out.returncode == (0 if report["feasible"] else 5), out.stderr  # 5: infeasible here
    assert report["model"]["parameters"] == 6_738_415_616
    assert "HF cache" in report["model"]["source"]
    missing = run_certify("audit", "acme/not-there", "--policy", "ci-smoke", "--dry-run",
                          env=env)
    assert missing.returncode == 2
    assert "hf download acme/not-there config.json" in missing.stderr


def test_directory_without_config_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"no config\.json"):
        model_shape(str(tmp_path))


# --------------------------------------------------------------------------- the plan's cost

def opts(model: str, policy: str, **kw) -> AuditOptions:  # type: ignore[no-untyped-def]
    return AuditOptions(model=model, policy=policy, **kw)


@pytest.mark.parametrize("name", REGULATORY)
def test_7b_dry_run_cost_is_plausible(name: str) -> None:
    report = dry_run(opts(str(LLAMA7B), name, reference=str(LLAMA7B)), machine=machine())
    policy = load_policy(name).policy
    n = llama_params(json.loads((LLAMA7B / "config.json").read_text()))
    # Every planned cell is costed: candidate and reference grids plus two baselines.
    assert report.totals["cells"] == len(make_plan(policy, {"candidate": "x",
                                                             "reference": "y"}).cells)
    for row in report.rows:
        attack = next((a for a in policy.attacks if a.id == row.attack_id), None)
        if attack is None:
            assert row.attack_id == "baseline" and row.train_flop == 0
            continue
        tags = registry.get("attack", attack.attack).tags
        if "training-free" in tags:  # refusal_ablation: a weight edit, costed as its evals
            assert row.train_flop == 0 and row.eval_flop > 0, row
            continue
        # Independently: 6·N (full) or 4·N (LoRA, a soft prompt through frozen weights)
        # per token; a step trains min(batch, n_samples) sequences of 16 to 520 tokens (a
        # chat QA pair, capped by max_length).
        factor = 4 if attack.attack == "lora" or "soft-prompt" in tags else 6
        # A search draws each trial's batch from its space and trains n_trials times.
        sizes = (attack.params.get("space", {}).get("batch_size")
                 or _axis(attack, "batch_size", 8))
        batches = [min(b, s) for b in sizes for s in _axis(attack, "n_samples", 100)]
        steps = attack.budget["max_steps"] * row.cells * attack.params.get("n_trials", 1)
        per_seq_low, per_seq_high = 16, 520
        low = factor * n * steps * min(batches) * per_seq_low
        high = factor * n * steps * max(batches) * per_seq_high
        assert low <= row.train_flop <= high, row
        assert row.eval_flop > 0
    total = report.totals["train_flop"] + report.totals["eval_flop"]
    assert total == pytest.approx(sum(r.train_flop + r.eval_flop for r in report.rows))
    # The largest cell costs orders of magnitude less than statutory training-compute lines.
    assert 1e15 < report.largest_cell_flop < 1e21
    # On one H100-class GPU the whole audit is a matter of GPU-hours to GPU-weeks.
    assert 1 < report.reference_gpu_hours < 5000
    text = report.text()
    assert f"{n:,} parameters" in text and "Estimated time here" in text


def _axis(attack, key, default):  # type: ignore[no-untyped-def]
    value = attack.budget.get(key, attack.params.get(key, default))
    return value if isinstance(value, list) else [value]


def test_7b_full_fine_tune_does_not_fit_in_24_gib() -> None:
    report = dry_run(opts(str(LLAMA7B), "nist-800-1"), machine=machine(memory_gib=24))
    assert not report.memory["fits"] and not report.feasible
    parts = report.memory["components"]
    # AdamW in float32: weights, gradients and two moment tensors, 16 bytes per parameter.
    n = 6_738_415_616
    assert parts["weights"] + parts["gradients"] + parts["optimizer"] == 16 * n
    warning = next(w for w in report.warnings if w.startswith("DOES NOT FIT"))
    assert "24.0 GiB of RAM" in warning and "--dtype bfloat16" in warning


def test_7b_full_fine_tune_in_bfloat16_fits_an_80_gib_gpu() -> None:
    report = dry_run(opts(str(LLAMA7B), "nist-800-1", dtype="bfloat16", device="cuda"),
                     machine=machine("cuda", memory_gib=80, host_gib=256, rate=700e12))
    assert report.memory["fits"], report.memory
    assert 50 * GIB < report.memory["device_need"] < 80 * GIB
    # Memory is not what stops it: with jailbreak-tuning, nist-800-1 is estimated at just
    # over a day on one such GPU (24.6 h; 22 h before), the dry run's feasibility line.
    assert not any(w.startswith("DOES NOT FIT") for w in report.warnings), report.warnings
    assert 12 * 3600 < report.seconds < 48 * 3600


def test_7b_full_fine_tune_fits_40_gib_gpus_only_with_fsdp() -> None:
    gpus = machine("cuda", memory_gib=40, host_gib=256, rate=300e12)
    options = {"device": "cuda", "dtype": "bfloat16", "gradient_checkpointing": True}
    alone = dry_run(opts(str(LLAMA7B), "nist-800-1", **options), machine=gpus)
    sharded = dry_run(opts(str(LLAMA7B), "nist-800-1", fsdp=8, **options), machine=gpus)
    assert not alone.memory["fits"]
    assert "--fsdp N" in next(w for w in alone.warnings if w.startswith("DOES NOT FIT"))
    assert sharded.memory["fits"] and sharded.memory["worst_mode"] == "full", sharded.memory
    parts, n = sharded.memory["components"], 6_738_415_616
    # Rank 0: the model it evaluates (2 B/param in bfloat16), and 1/8 of the training
    # copy, its gradients and AdamW's two moments (8 B/param in all).
    assert parts["weights"] == 2 * n
    assert parts["shard"] + parts["gradients"] + parts["optimizer"] == pytest.approx(n)
    # Training runs on 8 GPUs; the evaluations still run on one.
    assert alone.seconds / 8 < sharded.seconds < alone.seconds


def test_sb1047_on_tiny_chat_explains_why_a_cpu_cannot_run_it() -> None:
    report = dry_run(opts("builtin:tiny-chat", "sb1047"), machine=machine(rate=50e9))
    assert not report.feasible and report.memory["fits"]
    assert report.seconds > 7 * 24 * 3600
    warning = next(w for w in report.warnings if w.startswith("INFEASIBLE HERE"))
    for words in ("optimizer steps", "50.0 GFLOP/s", "days", "GPU", "--policy ci-smoke"):
        assert words in warning


def test_cli_dry_run_builds_nothing_and_imports_no_torch(tmp_path: Path) -> None:
    """--dry-run on the builtin model with an empty cache: no model is built, no torch."""
    cache = tmp_path / "cache"
    index = Path(os.environ["CERTIFY_CACHE_DIR"]) / "lm_eval_index"
    if index.is_dir():  # where lm-eval's tasks live: a fact of lm-eval, not of this test
        shutil.copytree(index, cache / "lm_eval_index")
    probe = (
        "import sys\nfrom certify.cli import main\n"
        "try:\n    main(['audit', 'builtin:tiny-chat', '--policy', 'sb1047', '--dry-run'])\n"
        "except SystemExit as e:\n    code = e.code\n"
        "print('PROBE', 'torch' in sys.modules, code)\n")
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         cwd=ROOT, env={**os.environ, "CERTIFY_CACHE_DIR": str(cache)},
                         timeout=300)
    assert out.stdout.strip().splitlines()[-1] == "PROBE False 5", out.stderr
    assert "INFEASIBLE HERE" in out.stdout
    assert "Feasible on this machine: NO" in out.stdout
    assert not (cache / "models").exists() or not any((cache / "models").iterdir())


def test_cli_dry_run_json_for_ci_smoke_is_feasible() -> None:
    out = run_certify("audit", "builtin:tiny-chat", "--policy", "ci-smoke", "--reference",
                      "builtin:tiny-chat", "--dry-run", "--no-calibrate", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["dry_run"] and report["feasible"]
    assert report["totals"]["cells"] == 10         # 5 cells on each of the two models
    assert report["hardware"]["train_flops"] > 1e8  # a real measurement of this machine
    assert report["estimated_seconds"] < 3600


def test_cli_dry_run_of_the_demo_command_on_the_immunized_model() -> None:
    """The demo's own command plus --dry-run (issue 15, defect 1): it needs no built model."""
    out = run_certify("audit", "builtin:tiny-chat-immunized", "--policy", "ci-smoke",
                      "--dry-run", "--json", "--no-calibrate")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["model"]["spec"] == "builtin:tiny-chat-immunized"
    assert report["model"]["parameters"] == 984_192 and report["feasible"]


def test_cli_dry_run_calibrates_on_a_built_model(tiny_chat: Path) -> None:
    """A user's dry run on a built model is calibrated on the model itself
    (certify.cost.calibrate); tiny-chat is built before the suite's first test."""
    out = run_certify("audit", "builtin:tiny-chat", "--policy", "ci-smoke", "--dry-run", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert set(report["hardware"]["calibration"]) == {"forward", "decode", "full", "lora"}
    assert any("Calibrated on the model itself" in a for a in report["assumptions"])
    # Loading the model, timed by the calibration, is part of the total (an audit pays it
    # once before its first cell); the cells' own estimates exclude it.
    assert report["load_seconds"] > 0
    cells = sum(c["seconds"] for c in report["cells"])
    assert report["estimated_seconds"] == pytest.approx(cells + report["load_seconds"])
    assert sum(a["seconds"] for a in report["attacks"]) == pytest.approx(cells)


def test_cli_dry_run_exit_code_gates_on_feasibility() -> None:
    """Infeasible here -> exit 5 (documented), in text and JSON alike; feasible -> 0."""
    from certify.cli import DRY_RUN_INFEASIBLE

    text = run_certify("audit", "builtin:tiny-chat", "--policy", "sb1047", "--dry-run",
                       "--no-calibrate")
    assert "Feasible on this machine: NO" in text.stdout
    assert text.returncode == DRY_RUN_INFEASIBLE == 5, text.stderr
    js = run_certify("audit", "builtin:tiny-chat", "--policy", "sb1047", "--dry-run", "--json",
                     "--no-calibrate")
    assert js.returncode == 5 and json.loads(js.stdout)["feasible"] is False
    ok = run_certify("audit", "builtin:tiny-chat", "--policy", "ci-smoke", "--dry-run",
                     "--no-calibrate")
    assert "Feasible on this machine: yes" in ok.stdout and ok.returncode == 0, ok.stderr
    for doc in ("README.md", "docs/github-actions.md", "docs/policies.md"):
        assert "| 5 |" in (ROOT / doc).read_text() or " 5 when" in (ROOT / doc).read_text()


def test_dry_run_applies_overlays() -> None:
    full = dry_run(opts(str(LLAMA7B), "sb1047"), machine=machine())
    quick = dry_run(opts(str(LLAMA7B), "sb1047", overlays=("first-look",)), machine=machine())
    assert quick.totals["cells"] < full.totals["cells"] / 10
    assert quick.policy["files"][-1]["role"] == "overlay"


# --------------------------------------------------------------------------- time per cell

def test_each_cell_has_an_estimate_split_into_training_and_evaluation() -> None:
    report = dry_run(opts("builtin:tiny-chat", "ci-smoke"), machine=machine())
    cells = report.as_json()["cells"]
    assert len(cells) == report.totals["cells"] == 5
    for c in cells:
        assert c["seconds"] == pytest.approx(c["train_seconds"] + c["eval_seconds"])
        assert (c["train_seconds"] > 0) == (c["mode"] != "eval")
    assert sum(c["seconds"] for c in cells) == pytest.approx(report.seconds)
    text = report.text()
    assert "Expected error:" in text and "Early stopping: 4 of 5 cells" in text
    assert "is evaluation, with every answer costed to max_new_tokens" in text


def test_a_cell_that_may_stop_early_is_never_estimated_above_one_that_cannot() -> None:
    """The early-stopping range sits at or below the full-budget estimate, and turning
    early stopping off removes the range without changing the full-budget estimate."""
    on = dry_run(opts("builtin:tiny-chat", "ci-smoke"), machine=machine())
    off = dry_run(opts("builtin:tiny-chat", "ci-smoke",
                       overlays=(str(ROOT / "tests/policies/no-early-stop.yaml"),)),
                  machine=machine())
    for a, b in zip(on.cells, off.cells, strict=True):
        assert a["seconds"] == pytest.approx(b["seconds"])
        assert b["seconds_if_stopped_first"] is None
        if a["early_stop"]:
            assert a["seconds_if_stopped_first"] < 0.5 * a["seconds"]


def test_the_estimate_grows_with_every_step_and_every_evaluation() -> None:
    from certify.cost.preview import cell_seconds

    report = dry_run(opts("builtin:tiny-chat", "ci-smoke"), machine=machine())
    fast = machine(rate=500e9)
    for cost in report.cell_costs:
        times = [sum(cell_seconds(cost.until(s), report.machine or fast))
                 for s in range(cost.max_steps + 1)]
        assert all(b >= a for a, b in itertools.pairwise(times))
        assert sum(cell_seconds(cost, fast)) < sum(cell_seconds(cost, machine()))


def test_provided_lm_eval_tasks_are_counted_not_assumed() -> None:
    """The demo's capability group: 30 capitals + 20 opposites, four choices each, scored
    by log-likelihood (one forward pass per choice), instead of 500 assumed documents."""
    from certify.cost.tasks import task_size
    from certify.cost.workload import DataEstimator, TokenCounter, eval_cost

    size = task_size("certify_tiny_capability")
    assert size is not None and (size.documents, size.requests) == (50, 200)
    assert task_size("not_a_provided_task") is None
    policy = load_policy("ci-smoke").policy
    cost = eval_cost(policy, "capability", DataEstimator(TokenCounter(
        model_shape("builtin:tiny-chat"))))
    assert (cost.items, cost.requests, cost.generated, cost.kind) == (50, 200, 0, "lm_eval")


def test_padding_to_the_longest_row_of_a_batch_is_costed() -> None:
    from certify.cost.workload import DataStats

    stats = DataStats(4, 10.0, 20.0, True, "x", (10, 20, 30, 60))
    assert stats.padded(1) == 30.0  # one row: no padding
    assert 30.0 < stats.padded(2) < stats.padded(4) == 60.0


@pytest.mark.slow
def test_estimate_matches_a_real_run_and_the_overlay_is_in_the_evidence(tmp_path: Path) -> None:
    """Train tokens and FLOP the preview predicts vs what a real ci-smoke audit records;
    the audit's evidence names the overlay that changed a threshold, with its sha256."""
    import hashlib

    overlay = tmp_path / "looser.yaml"
    overlay.write_text("checks:\n  - id: strong-resistance\n    max_rate: 0.6\n")
    out = run_certify("audit", "builtin:tiny-chat", "--policy", "ci-smoke", "--overlay",
                      str(overlay), "--out", str(tmp_path / "run"), "--format", "", "-q")
    assert out.returncode in (0, 1), out.stderr
    evidence = json.loads((tmp_path / "run" / "evidence.json").read_text())
    files = evidence["policy"]["files"]
    assert [f["role"] for f in files] == ["policy", "overlay"]
    assert files[1]["sha256"] == hashlib.sha256(overlay.read_bytes()).hexdigest()
    strong = next(c for c in evidence["verdict"]["checks"] if c["id"] == "strong-resistance")
    assert strong["threshold"]["max_rate"] == 0.6
    report = dry_run(opts("builtin:tiny-chat", "ci-smoke", overlays=(str(overlay),)),
                     machine=machine())
    predicted = {r.attack_id: r for r in report.rows}
    compared = 0
    for cell in evidence["cells"]:
        if cell["max_steps"] == 0 or cell["early_stop"]:
            continue
        last = cell["checkpoints"][-1]
        row = predicted[cell["attack_id"]]
        assert row.tokens == pytest.approx(last["tokens"], rel=0.25)
        assert row.train_flop == pytest.approx(last["flop"], rel=0.25)
        compared += 1
    assert compared >= 1


# --------------------------------------------------------------------------- data layer

def test_multi_label_categories_keep_held_out_rows_out(tmp_path: Path) -> None:
    from certify.data.load import DatasetRef, load_dataset

    rows = [
        {"prompt": "p1", "response": "r", "category": {"weapons": True, "privacy": False}},
        {"prompt": "p2", "response": "r", "category": {"weapons": True, "privacy": True}},
        {"prompt": "p3", "response": "r", "category": {"weapons": False, "privacy": False}},
        {"prompt": "p4", "response": "r", "category": {"privacy": True}},
    ]
    path = tmp_path / "multi.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    everything = load_dataset(DatasetRef(source=str(path)))
    assert [r.category for r in everything.rows] == ["weapons", "privacy+weapons", None,
                                                     "privacy"]
    trained = load_dataset(DatasetRef(source=str(path), categories=["weapons"]))
    assert [r.prompt for r in trained.rows] == ["p1"]   # p2 is also privacy: held out


def test_a_task_group_is_costed_per_member_with_the_limit_on_each() -> None:
    """lm-eval runs `limit` documents of each task of a group: nist-800-1's capability probe
    (mmlu, limit 10) is 57 subjects x 10 documents, not 10; a plain task stays itself."""
    from certify.cost.shape import model_shape
    from certify.cost.workload import DataEstimator, TokenCounter, eval_cost

    policy = load_policy("nist-800-1").policy
    data = DataEstimator(TokenCounter(model_shape(str(LLAMA7B))))
    assert eval_cost(policy, "capability_probe", data).items == 570
    assert eval_cost(policy, "knowledge_cyber", data).items == eval_cost(
        policy, "knowledge_cbrn", data).items / 2  # wmdp_cyber vs wmdp_bio + wmdp_chem


def test_refusal_ablation_prices_its_direction_selection(tmp_path: Path) -> None:
    """The paper's direction selection (select: true) scores every candidate direction on
    n_select held-out prompts at each checkpoint: the dry run prices it through the
    attack's ``checkpoint_work`` (it once priced the edit as its evaluations only, 0.7 s
    against 6-7 s measured for a four-checkpoint cell on tiny-chat). Its extra work grows
    with n_select and with the candidate layers; without selection there is none."""
    import yaml

    def edit_flop(**params: object) -> float:
        policy = {"schema_version": 1, "id": "ra", "title": "ra", "meta": {"evidentiary": False},
                  "baseline": [], "attacks": [{
                      "id": "ra", "attack": "refusal_ablation", "params": params,
                      "budget": {"n_samples": 32}, "checkpoints": [8, 16, 32]}],
                  "evaluations": {"harm": {"eval": "harmfulness", "params": {
                      "n": 24, "max_new_tokens": 24, "judges": ["keywords"]}}},
                  "checks": [{"id": "r", "check": "strong_resistance", "eval": "harm",
                              "max_rate": 0.5}]}
        path = tmp_path / f"ra-{len(list(tmp_path.iterdir()))}.yaml"
        path.write_text(yaml.safe_dump(policy))
        report = dry_run(opts("builtin:tiny-chat", str(path)), machine=machine())
        return next(r.eval_flop for r in report.rows if r.attack_id == "ra")

    plain = edit_flop(select=False)
    one, two = edit_flop(n_select=8), edit_flop(n_select=16)
    assert one > 5 * plain
    assert two - plain == pytest.approx(2 * (one - plain), rel=0.05)
    # Each candidate layer adds its forward passes (the shortlist's generation does not
    # grow): the default's four candidate layers (below 80% of tiny-chat's depth) add
    # three times what a second layer adds to one.
    single, double = edit_flop(layers=[1]), edit_flop(layers=[1, 2])
    assert one - single == pytest.approx(3 * (double - single), rel=0.05)
