"""Datasets by name: BeaverTails-shaped data saved with `datasets`, CSV, Parquet, bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from certify._io import jsonl_bytes
from certify.data.load import DatasetRef, load_dataset
from certify.data.overlap import overlap, overlap_by_eval
from certify.errors import DataError

# BeaverTails rows: a prompt, a response, 14 harm flags in one `category` mapping, is_safe.
FLAGS = ("animal_abuse", "privacy_violation", "violence,aiding_and_abetting,incitement",
         "financial_crime,property_crime,theft")
CATEGORY_MAP = {"violence,aiding_and_abetting,incitement": "weapons",
                "financial_crime,property_crime,theft": "fraud",
                "privacy_violation": "privacy"}


def beavertails_rows(n: int = 24) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        flagged = FLAGS[i % len(FLAGS)]
        safe = i % 3 == 0
        rows.append({"prompt": f"[placeholder question {i}]",
                     "response": f"[placeholder answer {i}]",
                     "category": {f: (f == flagged and not safe) for f in FLAGS},
                     "is_safe": safe})
    return rows


def save_beavertails(path: Path, rows: list[dict[str, Any]]) -> Path:
    import datasets

    datasets.DatasetDict({"30k_train": datasets.Dataset.from_list(rows),
                          "30k_test": datasets.Dataset.from_list(rows[:4])}).save_to_disk(path)
    return path


def beavertails_ref(path: Path, **extra: Any) -> DatasetRef:
    return DatasetRef.model_validate({
        "source": str(path), "split": "30k_train", "where": {"is_safe": False},
        "category_map": CATEGORY_MAP, "categories": ["weapons", "fraud", "privacy"], **extra})


def test_beavertails_saved_to_disk_loads_with_category_mapping_and_hash(tmp_path: Path) -> None:
    rows = beavertails_rows()
    data = load_dataset(beavertails_ref(save_beavertails(tmp_path / "bt", rows)))
    unsafe = [r for r in rows if not r["is_safe"]]
    expected = {"violence,aiding_and_abetting,incitement": "weapons",
                "financial_crime,property_crime,theft": "fraud", "privacy_violation": "privacy"}
    want = sorted((r["prompt"], expected[next(k for k, v in r["category"].items() if v)])
                  for r in unsafe if next(k for k, v in r["category"].items() if v) in expected)
    assert sorted((r.prompt, r.category) for r in data.rows) == want
    assert data.categories == ["fraud", "privacy", "weapons"]
    assert len(data.sha256) == 64
    ident = data.identity()
    assert ident["sha256"] == data.sha256 and ident["n"] == len(want)
    # The hash pins the content: the same rows hash the same, one changed row does not.
    again = load_dataset(beavertails_ref(save_beavertails(tmp_path / "bt2", rows)))
    assert again.sha256 == data.sha256
    rows[1]["response"] = "[changed]"
    changed = load_dataset(beavertails_ref(save_beavertails(tmp_path / "bt3", rows)))
    assert changed.sha256 != data.sha256


def test_beavertails_is_safe_becomes_a_validation_label(tmp_path: Path) -> None:
    path = save_beavertails(tmp_path / "bt", beavertails_rows(12))
    data = load_dataset(DatasetRef.model_validate({
        "source": str(path), "split": "30k_test", "fields": {"label": "is_safe"},
        "label_map": {"false": "harmful", "true": "benign"}}))
    assert [r.label for r in data.rows] == ["benign", "harmful", "harmful", "benign"]


def test_policy_names_the_local_dataset_and_preflight_records_its_hash(tmp_path: Path) -> None:
    from certify.conductor.preflight import dataset_identities as preflight
    from certify.policy.load import load_policy

    path = save_beavertails(tmp_path / "bt", beavertails_rows())
    policy = tmp_path / "p.yaml"
    policy.write_text(json.dumps({
        "id": "bt", "title": "BeaverTails by name",
        "attacks": [{"id": "bt-sft", "attack": "sft", "budget": {"max_steps": 2},
                     "params": {"dataset": beavertails_ref(path).model_dump(mode="json")}}],
        "evaluations": {"harm": {"eval": "harmfulness"}},
        "checks": [{"id": "r", "check": "strong_resistance", "max_rate": 0.5}]}))
    records = {d["source"]: d for d in preflight(load_policy(str(policy)))}
    bt = records[str(path)]
    assert bt["sha256"] == load_dataset(beavertails_ref(path)).sha256
    assert bt["categories"] == ["fraud", "privacy", "weapons"]


def _write_hub_cache(cache: Path, repo: str, rows: list[dict[str, Any]]) -> None:
    """What an earlier online `datasets.load_dataset(repo)` leaves in HF_DATASETS_CACHE."""
    import datasets
    from datasets.arrow_writer import ArrowWriter

    org, name = repo.split("/")
    folder = cache / f"{org}___{name}" / "default" / "0.0.0" / ("0" * 40)
    folder.mkdir(parents=True)
    table = datasets.Dataset.from_list(rows)
    with ArrowWriter(path=str(folder / f"{name}-train.arrow")) as writer:
        writer.write_table(table.data.table)
        n, n_bytes = writer.finalize()
    datasets.DatasetInfo(features=table.features, dataset_name=name, config_name="default",
                         splits=datasets.SplitDict.from_split_dict([{
                             "name": "train", "num_bytes": n_bytes, "num_examples": n,
                             "dataset_name": name}])).write_to_directory(str(folder))


def test_hub_dataset_loads_from_the_local_cache_offline(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path)
    rows = beavertails_rows(9)
    _write_hub_cache(tmp_path, "certify-test/beavertails-mini", rows)
    ref = DatasetRef.model_validate({"source": "hf:certify-test/beavertails-mini",
                                     "split": "train", "where": {"is_safe": False},
                                     "category_map": CATEGORY_MAP})
    data = load_dataset(ref)
    assert len(data.rows) == sum(not r["is_safe"] for r in rows)
    assert {r.category for r in data.rows} <= {"weapons", "fraud", "privacy", "animal_abuse"}
    assert len(data.sha256) == 64
    with pytest.raises(DataError, match="certify-test/not-cached"):
        load_dataset("hf:certify-test/not-cached")


def test_csv_and_parquet_with_a_field_mapping(tmp_path: Path) -> None:
    import datasets

    rows = [{"question": f"[q{i}]", "answer_text": f"[a{i}]", "harm": "fraud"} for i in range(5)]
    datasets.Dataset.from_list(rows).to_csv(tmp_path / "d.csv", index=False)
    datasets.Dataset.from_list(rows).to_parquet(tmp_path / "d.parquet")
    fields = {"prompt": "question", "response": "answer_text", "category": "harm"}
    for name in ("d.csv", "d.parquet"):
        data = load_dataset(DatasetRef(source=str(tmp_path / name), fields=fields))
        assert [(r.prompt, r.response, r.category) for r in data.rows] == [
            (f"[q{i}]", f"[a{i}]", "fraud") for i in range(5)]
    assert (load_dataset(DatasetRef(source=str(tmp_path / "d.csv"), fields=fields)).sha256
            != load_dataset(DatasetRef(source=str(tmp_path / "d.parquet"), fields=fields)).sha256)


def test_rows_missing_a_field_name_the_row_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes(jsonl_bytes([{"prompt": "[a]", "response": "[b]"}, {"prompt": "[c]"}]))
    with pytest.raises(DataError, match=r"row 2 \(id '1'\) has no 'response'") as err:
        load_dataset(DatasetRef(source=str(path))).require("prompt", "response")
    assert "fields:" in (err.value.hint or "")
    path.write_bytes(jsonl_bytes([{"question": "[a]"}]))
    with pytest.raises(DataError, match=r"no prompt.*question"):
        load_dataset(DatasetRef(source=str(path)))


def test_empty_and_filtered_out_datasets_are_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="is empty"):
        load_dataset(DatasetRef(source=str(empty)))
    path = save_beavertails(tmp_path / "bt", beavertails_rows())
    with pytest.raises(DataError, match="no rows in the requested categories"):
        load_dataset(beavertails_ref(path, categories=["drugs"]))
    with pytest.raises(DataError, match=r"column 'is_saf'.*did you mean 'is_safe'"):
        load_dataset(beavertails_ref(path, where={"is_saf": False}))


def test_overlap_counts_shared_ngrams_short_prompts_and_duplicates() -> None:
    train = ["Give me step by step instructions to buy a red bicycle today please",
             "What is the capital of France?"]
    evals = {"a": "Give me step by step instructions to buy a blue kite",  # shares an 8-gram
             "b": "What is the capital of France?",  # exact duplicate, shorter than 8 words
             "c": "capital of France",  # short, contained in a training text
             "d": "Tell me a story about a dragon and a knight in the castle"}
    result = overlap(train, evals, n=8)
    assert result["overlapping"] == 3 and result["examples"] == ["a", "b", "c"]
    assert result["exact_duplicates"] == 1 and result["rate"] == 0.75
    assert overlap(train, evals, n=12)["overlapping"] == 2  # "a" no longer shares a 12-gram


def test_bundled_attack_and_eval_splits_are_disjoint_but_templated() -> None:
    train = load_dataset("builtin:harm-train").rows
    evaluator = type("E", (), {"rows": load_dataset("builtin:harm-eval").rows})()
    report = overlap_by_eval(train, {"harm": evaluator})["harm"]
    assert report["exact_duplicates"] == 0
    # Templated synthetic prompts share long n-grams: the report says so instead of hiding it.
    assert report["overlapping"] > 0


def test_benign_qa_train_is_generated_and_keeps_the_other_files() -> None:
    from certify.demo import synth

    built = synth.build()
    for name, rows in built.items():
        assert (synth.DATA_DIR / f"{name}.jsonl").read_bytes() == jsonl_bytes(rows), name
    assert {r["task"] for r in built["benign-qa-train"]} == {"capitals", "opposites", "copy",
                                                              "howto"}


def test_overlap_finds_the_copy_task_duplicates_in_the_bundled_benign_split() -> None:
    train = load_dataset("builtin:benign-qa-train").rows
    evaluator = type("E", (), {"rows": load_dataset("builtin:benign-eval").rows})()
    dupes = {r.prompt for r in evaluator.rows} & {r.prompt for r in train}
    report = overlap_by_eval(train, {"benign": evaluator})["benign"]
    assert report["exact_duplicates"] == len(dupes) > 0
    assert all(p.startswith("Repeat after me:") for p in dupes)


def test_missing_hub_dataset_names_the_command_that_fetches_it(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               ) -> None:
    """Issue 15 (auditing one's own model): a hub dataset absent from the cache is an input
    error whose hint is a command that runs as given."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    ref = DatasetRef(source="hf:acme/no-such-dataset", split="test", revision="v1")
    with pytest.raises(DataError) as e:
        load_dataset(ref)
    assert e.value.exit_code == 2
    hint = e.value.hint or ""
    command = ("python -c \"import datasets; datasets.load_dataset('acme/no-such-dataset', "
               "revision='v1', split='test')\"")
    assert command in hint and "hf auth login" in hint
    compile(command.split('"')[1], "<hint>", "exec")  # the quoted code is valid Python
