"""Bad evaluation inputs are refused before anything runs, by the audit and by its dry run
(issue 12, item 7), and the shipped policies' hazardous-knowledge inputs fail with the
command that fetches them (their datasets are never bundled).

Every test goes through the real CLI. The lm-eval checks index lm-eval's task YAMLs (tens
of seconds on a small CPU), so each test makes one or two calls.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from certify.data.load import DatasetRef, load_dataset
from certify.policy.load import load_policy
from tests.conftest import ROOT, run_certify

KNOWLEDGE_POLICY = ROOT / "tests" / "policies" / "knowledge-relearning.yaml"
TYPO = "evaluations:\n  capability: {params: {tasks: [certify_tiny_capabilty]}}\n"


def _offline(tmp_path: Path) -> dict[str, str]:
    """No network and an empty Hugging Face cache: "not cached" on every machine."""
    return {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def _overlay(tmp_path: Path, text: str, name: str = "overlay.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _documents(tmp_path: Path) -> Path:
    data = tmp_path / "docs.jsonl"
    data.write_text("".join(json.dumps({"prompt": "", "response": f"Document {i}: rivers."})
                            + "\n" for i in range(8)), encoding="utf-8")
    return data


def test_an_unknown_capability_task_exits_2_before_anything_runs(tmp_path: Path) -> None:
    """The plain lm_eval evaluation used to find an unknown task only when a cell ran."""
    out = tmp_path / "run"
    proc = run_certify("audit", "builtin:tiny-chat", "--policy", "ci-smoke", "--overlay",
                       str(_overlay(tmp_path, TYPO)), "--out", str(out))
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert not out.exists()  # refused before a run directory, a model or a cell
    assert ("evaluation 'capability': lm-eval has no task 'certify_tiny_capabilty' "
            "(did you mean 'certify_tiny_capability'?)") in proc.stderr
    assert "lm-eval ls tasks" in proc.stderr and "include_paths" in proc.stderr


def test_the_dry_run_refuses_what_the_audit_would_refuse(tmp_path: Path) -> None:
    """A dry run that printed "Feasible" for a policy the audit refuses would mislead a CI
    gate: it exits 2 with the same error (JSON too), and prints no plan."""
    proc = run_certify("audit", "builtin:tiny-chat", "--policy", "ci-smoke", "--overlay",
                       str(_overlay(tmp_path, TYPO)), "--dry-run", "--json")
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    error = json.loads(proc.stdout)["error"]
    assert error["exit_code"] == 2 and error["kind"] == "InputError"
    assert "lm-eval has no task 'certify_tiny_capabilty'" in error["message"]
    assert "lm-eval ls tasks" in error["hint"]
    assert "Feasible on this machine" not in proc.stdout + proc.stderr


def test_dry_run_of_sb1047_shows_the_knowledge_rows_and_reads_no_corpus() -> None:
    """The strict profile's relearning attacks and WMDP evaluations are costed (the
    infeasible exit 5, not an input error), and the corpora are listed as not read."""
    proc = run_certify("audit", "builtin:tiny-chat", "--policy", "sb1047", "--dry-run",
                       "--json", "--no-calibrate")
    assert proc.returncode == 5, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    attacks = {r["attack_id"]: r for r in report["attacks"]}
    for attack in ("relearn-bio", "relearn-cyber"):
        assert attacks[attack]["technique"] == "relearning"
        assert attacks[attack]["cells"] == 3 * 5 and attacks[attack]["max_steps"] == 5000
    evaluations = {e["eval_id"]: e for e in report["evaluations"]}
    for eval_id in ("knowledge_cbrn", "knowledge_cyber"):
        assert evaluations[eval_id]["plugin"] == "knowledge"
        assert evaluations[eval_id]["kind"] == "lm_eval" and evaluations[eval_id]["runs"] > 1
    not_read = next(a for a in report["assumptions"] if a.startswith("Not read by a dry run"))
    assert "hf:cais/wmdp-bio-forget-corpus[train]" in not_read
    assert "hf:cais/wmdp-corpora/cyber-forget-corpus[train]" in not_read


def test_a_missing_wmdp_corpus_exits_2_naming_the_command_that_fetches_it(
        tmp_path: Path) -> None:
    """The shipped relearning corpus, not in the HF cache: an input error before anything
    runs, with the fetch command (its configuration included), never a crash."""
    ref = cyber_corpus()
    overlay = _overlay(tmp_path, yaml.safe_dump(
        {"attacks": [{"id": "relearn", "params": {"dataset": ref}}]}))
    out = tmp_path / "run"
    proc = run_certify("audit", "builtin:tiny-chat", "--policy", str(KNOWLEDGE_POLICY),
                       "--overlay", str(overlay), "--out", str(out), env=_offline(tmp_path))
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert not out.exists()
    assert "cannot load Hugging Face dataset 'cais/wmdp-corpora'" in proc.stderr
    assert ("datasets.load_dataset('cais/wmdp-corpora', 'cyber-forget-corpus', "
            "split='train')") in proc.stderr


def test_missing_wmdp_questions_exit_2_naming_the_command_that_fetches_them(
        tmp_path: Path) -> None:
    """WMDP's questions (lm-eval reads cais/wmdp) not in the HF cache: preflight loads the
    tasks, so this is exit 2 before training, not an error in every cell after it."""
    overlay = _overlay(tmp_path, (
        f"attacks:\n  - id: relearn\n    params: {{dataset: {_documents(tmp_path)}}}\n"
        "evaluations:\n  knowledge: {params: {tasks: [wmdp_cyber], limit: 4}}\n"))
    out = tmp_path / "run"
    proc = run_certify("audit", "builtin:tiny-chat", "--policy", str(KNOWLEDGE_POLICY),
                       "--overlay", str(overlay), "--out", str(out), env=_offline(tmp_path))
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert not out.exists()
    assert "evaluation 'knowledge': lm-eval could not load the data of ['wmdp_cyber']" in \
        proc.stderr
    assert "datasets.load_dataset('cais/wmdp', 'wmdp-cyber')" in proc.stderr


def cyber_corpus() -> dict[str, object]:
    """sb1047's cyber relearning corpus, as the policy names it."""
    dataset = load_policy("sb1047").policy.attack("relearn-cyber").params["dataset"]
    assert isinstance(dataset, dict) and dataset["source"] == "hf:cais/wmdp-corpora"
    return dataset


# --------------------------------------------------------------------------- the loader

def test_documents_without_a_prompt_column_load_with_an_empty_prompt(tmp_path: Path) -> None:
    """Relearning corpora have a `text` column only: `fields: {prompt: "", response: text}`."""
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"text": f"paper {i}"}) + "\n" for i in range(3)))
    rows = load_dataset(DatasetRef.model_validate(
        {"source": str(path), "fields": {"prompt": "", "response": "text"}})).rows
    assert [(r.prompt, r.response) for r in rows] == [("", "paper 0"), ("", "paper 1"),
                                                      ("", "paper 2")]


def test_a_dataset_config_leaves_existing_references_and_their_cell_ids_alone() -> None:
    """`config` is dumped only when set: cell ids hash the dumped parameters."""
    assert "config" not in DatasetRef(source="hf:tatsu-lab/alpaca").model_dump(mode="json")
    ref = DatasetRef(source="hf:cais/wmdp-corpora", config="cyber-forget-corpus")
    assert ref.model_dump(mode="json")["config"] == "cyber-forget-corpus"
    assert ref.label == "hf:cais/wmdp-corpora/cyber-forget-corpus"


def _narrow_manager(names: list[str]) -> tuple[object, list[str]]:
    """find_tasks with lm-eval's task placement stored (built here only if no earlier
    process stored it) and no full index in memory."""
    from certify.evals import capability, lm_eval_index

    provided = tuple(capability.provided_task_paths())
    if lm_eval_index.load() is None:
        lm_eval_index.store(capability._task_manager(provided, True))
    capability._MANAGERS.pop((provided, True), None)
    narrow, missing = capability.find_tasks(names, [])
    assert (provided, True) not in capability._MANAGERS  # the full index was not built
    return narrow, missing


STANDARD = ["mmlu", "wmdp_bio", "arc_easy", "ai2_arc", "hellaswag"]


def test_standard_tasks_are_found_through_the_stored_index_without_the_full_one() -> None:
    from certify.evals import capability

    narrow, missing = _narrow_manager([*STANDARD, "mmlu_typo_task"])
    assert missing == ["mmlu_typo_task"]  # unknown to lm-eval too, said without the index
    assert len(narrow.all_tasks) < 1000 < len(capability.known_task_names(narrow))  # type: ignore[attr-defined]
    leaves = dict(capability.task_leaves(narrow, "mmlu"))
    assert len(leaves) == 57 and all(cfg.get("output_type") == "multiple_choice"
                                     for cfg in leaves.values())
    assert sorted(dict(capability.task_leaves(narrow, "ai2_arc"))) == ["arc_challenge",
                                                                       "arc_easy"]


@pytest.mark.slow
def test_the_narrow_task_manager_gives_the_full_indexs_tasks() -> None:
    """Against the oracle, every lm-eval YAML indexed (tens of seconds): the same leaves and
    the same resolved configs for each standard task the shipped policies name."""
    from certify.evals import capability

    narrow, _ = _narrow_manager(STANDARD)
    full = capability._task_manager(tuple(capability.provided_task_paths()), True)
    for name in STANDARD:
        got = sorted((leaf, str(cfg)) for leaf, cfg in capability.task_leaves(narrow, name))
        assert got and got == sorted((leaf, str(cfg))
                                     for leaf, cfg in capability.task_leaves(full, name))
