"""Shards and merge: `audit --shard I/N` twice, then `certify merge`, equals one unsharded audit.

The three real audits (builtin:tiny-chat, tests/policies/scale-tiny.yaml) run in this
process once per session; the refusal tests tamper with copies of the shard run
directories and run `certify merge` as a user would.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from certify._io import read_json
from certify.evidence import Evidence
from tests._scale import audit_once, cell_metrics, check_verdicts
from tests.conftest import ROOT, run_certify


@pytest.fixture(scope="module")
def shards(tiny_chat: Path) -> list[Path]:
    return [audit_once(f"shard-{i}", shard=(i, 2))[0] for i in range(2)]


@pytest.fixture(scope="module")
def unsharded(tiny_chat: Path) -> Path:
    return audit_once("unsharded")[0]


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".lock"))
    return dst


def _merge(*args: Path | str, formats: str = "md") -> subprocess.CompletedProcess[str]:
    return run_certify("merge", *map(str, args), "--format", formats, "--json")


def test_a_shard_alone_is_incomplete(shards: list[Path]) -> None:
    for shard in shards:
        ev = Evidence.read(shard / "evidence.json")
        assert ev.run["status"] == "incomplete" and ev.run["shard"] in ([0, 2], [1, 2])
        assert ev.verdict is not None and ev.verdict.exit_code == 3
    ids = [{p.stem for p in (s / "cells").glob("*.json")} for s in shards]
    assert ids[0] and ids[1] and not ids[0] & ids[1]


def test_merged_shards_equal_the_unsharded_run(shards: list[Path], unsharded: Path,
                                               tmp_path: Path) -> None:
    result = _merge(*shards, "--out", tmp_path / "merged", formats="pdf,md")
    whole = Evidence.read(unsharded / "evidence.json")
    assert whole.verdict is not None
    assert result.returncode == whole.verdict.exit_code == 1, result.stderr
    merged = Evidence.read(tmp_path / "merged" / "evidence.json")
    assert merged.run["status"] == "complete"
    assert cell_metrics(merged) == cell_metrics(whole)
    assert check_verdicts(merged) == check_verdicts(whole)
    summary = json.loads(result.stdout)
    assert summary["verdict"] == whole.verdict.overall
    assert Path(summary["outputs"]["pdf"]).read_bytes().startswith(b"%PDF")
    # The merged run records where each cell came from, and copies samples byte for byte.
    sources = {c for entry in merged.run["merged_from"] for c in entry["cells"]}
    assert sources == {c.id for c in whole.cells}
    for cell in merged.cells:
        shard = next(s for s in shards if (s / "cells" / f"{cell.id}.json").exists())
        assert ((tmp_path / "merged" / cell.samples_file).read_bytes()
                == (shard / cell.samples_file).read_bytes())


def test_merge_imports_no_torch(shards: list[Path], tmp_path: Path) -> None:
    code = ("import sys; from pathlib import Path; from certify.conductor import merge; "
            f"r = merge([Path({str(shards[0])!r}), Path({str(shards[1])!r})], "
            f"Path({str(tmp_path / 'm')!r}), ('md',)); "
            "assert 'torch' not in sys.modules, 'torch imported'; print(r.exit_code)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "1"


def test_missing_shard_gives_an_incomplete_merge(shards: list[Path], tmp_path: Path) -> None:
    result = _merge(shards[0], "--out", tmp_path / "half")
    assert result.returncode == 3, result.stderr
    assert Evidence.read(tmp_path / "half" / "evidence.json").run["status"] == "incomplete"


@pytest.mark.parametrize("what", ["model digest", "policy bytes", "dtype", "autocast"])
def test_shards_of_different_audits_are_refused(shards: list[Path], tmp_path: Path,
                                                what: str) -> None:
    other = _copy(shards[1], tmp_path / "other")
    manifest = read_json(other / "run.json")
    evidence = json.loads((other / "evidence.json").read_text())
    if what == "model digest":
        manifest["models"]["candidate"]["root_digest"] = "0" * 64
        expected = "models"
    elif what == "policy bytes":
        manifest["policy"]["files"][0]["sha256"] = "1" * 64
        expected = "policy files"
    else:
        evidence["run"][what] = "bfloat16"
        expected = what
    (other / "run.json").write_text(json.dumps(manifest))
    (other / "evidence.json").write_text(json.dumps(evidence))
    result = _merge(shards[0], other, "--out", tmp_path / "merged")
    assert result.returncode == 2, result.stderr
    assert "not shards of one audit" in result.stderr and expected in result.stderr
    assert not (tmp_path / "merged").exists()


def test_a_cell_naming_a_path_outside_the_run_is_refused(shards: list[Path],
                                                         tmp_path: Path) -> None:
    bad = _copy(shards[1], tmp_path / "bad")
    cell_file = next((bad / "cells").glob("*.json"))
    record = json.loads(cell_file.read_text())
    (tmp_path / "outside.jsonl").write_bytes(b"")
    record["samples_file"] = "../../outside.jsonl"
    cell_file.write_text(json.dumps(record))
    result = _merge(shards[0], bad, "--out", tmp_path / "merged")
    assert result.returncode == 2, result.stderr
    assert "expected" in result.stderr and "samples/" in result.stderr


def test_a_plan_id_with_dot_dot_is_refused(shards: list[Path], tmp_path: Path) -> None:
    bad = _copy(shards[1], tmp_path / "bad")
    manifest = read_json(bad / "run.json")
    manifest["plan"][1]["id"] = "../../cells/evil"
    (bad / "run.json").write_text(json.dumps(manifest))
    result = _merge(bad, "--out", tmp_path / "merged")
    assert result.returncode == 2, result.stderr
    assert "not certify cell names" in result.stderr


def test_a_symlinked_samples_file_is_refused(shards: list[Path], tmp_path: Path) -> None:
    bad = _copy(shards[1], tmp_path / "bad")
    samples = next((bad / "samples").glob("*.jsonl"))
    target = tmp_path / "elsewhere.jsonl"
    target.write_bytes(samples.read_bytes())
    samples.unlink()
    samples.symlink_to(target)
    result = _merge(shards[0], bad, "--out", tmp_path / "merged")
    assert result.returncode == 2, result.stderr
    assert "outside its run directory" in result.stderr


def test_tampered_samples_are_refused(shards: list[Path], tmp_path: Path) -> None:
    bad = _copy(shards[1], tmp_path / "bad")
    samples = next((bad / "samples").glob("*.jsonl"))
    data = samples.read_bytes()
    label = re.search(rb'"label": ?"(\w+)"', data)  # relabel the first judged answer
    assert label is not None
    other = b"harmful" if label.group(1) != b"harmful" else b"benign"
    samples.write_bytes(data[:label.start(1)] + other + data[label.end(1):])
    result = _merge(shards[0], bad, "--out", tmp_path / "merged")
    assert result.returncode == 2, result.stderr
    assert "sha256" in result.stderr


def test_merge_refuses_unfinished_shards_and_used_outputs(shards: list[Path],
                                                          tmp_path: Path) -> None:
    unfinished = _copy(shards[1], tmp_path / "unfinished")
    (unfinished / "evidence.json").unlink()
    result = _merge(shards[0], unfinished, "--out", tmp_path / "merged")
    assert result.returncode == 2 and "did not finish" in result.stderr
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "keep.txt").write_text("x")
    result = _merge(*shards, "--out", tmp_path / "used")
    assert result.returncode == 2 and "not empty" in result.stderr
    assert (tmp_path / "used" / "keep.txt").read_text() == "x"
    result = _merge(shards[0], "--out", shards[0])
    assert result.returncode == 2 and "one of the inputs" in result.stderr
