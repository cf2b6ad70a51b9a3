"""The run directories of one sharded audit, read, checked and combined into one.

``certify audit --shard I/N`` runs every N-th cell of the plan; each shard's
evidence is incomplete on its own. :func:`read_shards` checks that every input is
the same audit (policy bytes, model digests, certify/torch/transformers/peft
versions, the plan, the numeric settings); :func:`combine` copies each planned cell's
result and samples file byte for byte (checking their sha256) into a new run
directory. The conductor (``certify.conductor.merge``) then collects, assesses and
renders the union exactly as ``audit`` does. Torch-free: a CI job can merge the
artifacts of a matrix on a small runner.

Inputs are untrusted files: cell ids must be certify cell names, cell and sample
files must be regular files inside their run directory, and nothing is read or
written through a path taken from their contents.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from certify._io import atomic_write_bytes, atomic_write_json, read_json, sha256_bytes
from certify.errors import InputError, RunDirError
from certify.evidence import CellRecord, Evidence
from certify.run.rundir import FORMAT, MANIFEST, RunDir

# role[:3] - attack id (a policy slug) - 10 hex digits; see certify.plan._cell_id.
CELL_ID = re.compile(r"^(can|ref)-[a-z0-9][a-z0-9_.-]{0,63}-[0-9a-f]{10}$")


@dataclass
class Shard:
    """One input run directory: its manifest, its evidence and its usable cell results."""

    path: Path
    manifest: dict[str, Any]
    evidence: Evidence
    cells: dict[str, tuple[CellRecord, bytes, bytes]] = field(default_factory=dict)
    """cell id → (record, cell file bytes, samples file bytes)."""


def _regular_file(base: Path, rel: str) -> Path:
    """``base/rel`` when it is a regular file inside ``base`` (no symlinks, no ``..``)."""
    path = base / rel
    if path.is_symlink() or not path.resolve().is_relative_to(base.resolve()):
        raise InputError(f"{path} points outside its run directory {base}",
                         hint="merge only run directories written by certify; this one was "
                              "altered")
    return path


def _read_shard(path: Path) -> Shard:
    if not (path / MANIFEST).is_file():
        raise InputError(f"{path} is not a certify run directory (no {MANIFEST})",
                         hint="give the --out directories of `certify audit --shard I/N` runs")
    manifest = read_json(path / MANIFEST)
    if manifest.get("format") != FORMAT:
        raise InputError(f"{path} holds a run in an unknown format {manifest.get('format')!r}")
    if not (path / "evidence.json").is_file():
        raise InputError(f"{path} has no evidence.json: that shard did not finish",
                         hint="re-run the same `certify audit ... --shard I/N --out DIR` command "
                              "to resume it, then merge")
    try:
        evidence = Evidence.read(path / "evidence.json")
    except ValueError as e:
        raise InputError(f"{path}/evidence.json is not valid certify evidence: "
                         f"{str(e).splitlines()[0]}") from None
    return Shard(path, manifest, evidence)


def _plan_ids(shard: Shard) -> list[str]:
    ids = [str(c.get("id")) for c in shard.manifest.get("plan", [])]
    bad = [i for i in ids if not CELL_ID.match(i)]
    if bad:
        raise InputError(f"{shard.path}/{MANIFEST} lists cell ids that are not certify cell "
                         f"names: {', '.join(repr(b) for b in bad[:3])}",
                         hint="merge only run directories written by certify; this one was "
                              "altered")
    return ids


def _read_cell(shard: Shard, cell_id: str) -> tuple[CellRecord, bytes, bytes] | None:
    """The cell's record and bytes, checked; None when the shard has no result for it."""
    cell_file = _regular_file(shard.path, f"cells/{cell_id}.json")
    if not cell_file.exists():
        return None
    raw = cell_file.read_bytes()
    try:
        record = CellRecord.model_validate_json(raw)
    except ValueError:
        raise InputError(f"{cell_file} is not a valid cell record",
                         hint="delete it and resume that shard to run the cell again") from None
    expected = f"samples/{cell_id}.jsonl"
    if record.id != cell_id or record.samples_file != expected:
        raise InputError(f"{cell_file} names id {record.id!r} and samples file "
                         f"{record.samples_file!r}; expected {cell_id!r} and {expected!r}",
                         hint="merge only run directories written by certify; this one was "
                              "altered")
    samples_file = _regular_file(shard.path, expected)
    samples = samples_file.read_bytes() if samples_file.is_file() else b""
    if sha256_bytes(samples) != record.samples_sha256:
        raise InputError(f"{samples_file} does not match the sha256 its cell record gives",
                         hint="the samples file was changed or truncated; delete the cell file "
                              "and resume that shard to run the cell again")
    return record, raw, samples


def _identity(shard: Shard) -> dict[str, Any]:
    """What must be equal for two run directories to be shards of one audit."""
    m, ev = shard.manifest, shard.evidence
    return {
        "policy id": m["policy"]["id"],
        "policy files (sha256)": [(f["role"], f["sha256"]) for f in m["policy"]["files"]],
        "effective policy": ev.policy.get("effective"),
        "models": {role: (x["spec"], x["root_digest"]) for role, x in m["models"].items()},
        "versions": m["versions"],
        "plan": [c["id"] for c in m["plan"]],
        "device, dtype, autocast and fsdp": (ev.run.get("device"), ev.run.get("dtype"),
                                             ev.run.get("autocast"), ev.run.get("fsdp", 1)),
    }


def check_same_audit(shards: list[Shard]) -> None:
    """Raise InputError naming every difference between the first shard and the others."""
    first = _identity(shards[0])
    problems = []
    for shard in shards[1:]:
        other = _identity(shard)
        diff = [key for key in first if first[key] != other[key]]
        if diff:
            problems.append(f"{shard.path} differs from {shards[0].path} in: {', '.join(diff)}")
    if problems:
        raise InputError("cannot merge: the run directories are not shards of one audit; "
                         + "; ".join(problems),
                         hint="merge only the --shard runs of one `certify audit` command "
                              "(same policy files, models, versions, --dtype, --autocast and "
                              "--fsdp)")


def _not_running(shard: Shard) -> None:
    """Refuse a shard another certify process is still writing (it would hand over half)."""
    try:
        with RunDir(shard.path).lock():
            pass
    except PermissionError:
        pass  # a read-only copy (e.g. downloaded CI artifacts) cannot be in use by a run


def _choose(shards: list[Shard], plan: list[str]) -> tuple[dict[str, tuple[Shard, Any]],
                                                            list[str]]:
    """Per planned cell, the shard whose result is used: an ok result wins over an error."""
    chosen: dict[str, tuple[Shard, Any]] = {}
    duplicates = []
    for shard in shards:
        for cell_id in plan:
            found = _read_cell(shard, cell_id)
            if found is None:
                continue
            if cell_id in chosen:
                duplicates.append(cell_id)
                if chosen[cell_id][1][0].status == "ok" or found[0].status != "ok":
                    continue
            chosen[cell_id] = (shard, found)
    return chosen, sorted(set(duplicates))


def _prepare_out(out: Path, shards: list[Shard]) -> RunDir:
    inputs = {s.path.resolve() for s in shards}
    if out.resolve() in inputs:
        raise InputError(f"--out {out} is one of the inputs", hint="merge into a new directory")
    if out.exists() and (not out.is_dir() or any(p for p in out.iterdir() if p.name != ".lock")):
        raise RunDirError(f"{out} exists and is not empty",
                          hint="merge into a new directory (merging never overwrites results)")
    return RunDir(out)


def _manifest(shards: list[Shard], chosen: dict[str, tuple[Shard, Any]],
              duplicates: list[str]) -> dict[str, Any]:
    first = shards[0].manifest
    return {"format": FORMAT, "run_id": str(uuid.uuid4()),
            "created": min(s.manifest["created"] for s in shards),
            "policy": first["policy"], "models": first["models"], "versions": first["versions"],
            "plan": first["plan"], "resumes": [],
            "merged_from": [{"path": str(s.path), "run_id": s.manifest["run_id"],
                             "shard": s.evidence.run.get("shard"),
                             "resumes": s.manifest.get("resumes", []),
                             "cells": sorted(i for i, (src, _) in chosen.items() if src is s)}
                            for s in shards],
            "duplicates": duplicates}


def _copy_cells(run_dir: RunDir, chosen: dict[str, tuple[Shard, Any]]) -> None:
    for cell_id, (shard, (record, raw, samples)) in sorted(chosen.items()):
        # Samples first, then the cell file: a cell file always has its samples (as audit does).
        atomic_write_bytes(run_dir.path / f"samples/{cell_id}.jsonl", samples)
        atomic_write_bytes(run_dir.cell_path(cell_id), raw)
        run_dir.event("cell_merged", cell=cell_id, status=record.status, source=str(shard.path))


def merged_environment(shards: list[Shard]) -> dict[str, Any]:
    """The first shard's environment, plus where every shard ran (hardware may differ)."""
    env = dict(shards[0].evidence.environment)
    env["shards"] = [{"run_id": s.manifest["run_id"], "hostname_hash": s.evidence.environment
                      .get("hostname_hash"), "hardware": s.evidence.environment.get("hardware"),
                      "platform": s.evidence.environment.get("platform")} for s in shards]
    return env


@dataclass
class Shards:
    """Finished shards of one audit, and per planned cell the shard whose result is used."""

    shards: list[Shard]
    planned: list[str]
    chosen: dict[str, tuple[Shard, Any]]
    duplicates: list[str]

    @property
    def first(self) -> Evidence:
        return self.shards[0].evidence


def read_shards(dirs: list[Path]) -> Shards:
    """The shards in ``dirs``, checked to be finished shards of one audit that no certify
    process is still writing, each planned cell's result chosen (ok wins over error)."""
    if not dirs:
        raise InputError("nothing to merge", hint="give the shards' run directories")
    shards = [_read_shard(Path(d)) for d in dirs]
    planned = _plan_ids(shards[0])
    for shard in shards[1:]:
        _plan_ids(shard)
    check_same_audit(shards)
    for shard in shards:
        _not_running(shard)
    chosen, duplicates = _choose(shards, planned)
    return Shards(shards, planned, chosen, duplicates)


def out_dir(shards: Shards, out: Path) -> RunDir:
    """The merge's output directory, refused when it is an input or not empty."""
    return _prepare_out(Path(out), shards.shards)


def combine(shards: Shards, run_dir: RunDir) -> None:
    """Fill ``run_dir`` (from :func:`out_dir`, locked) with the chosen cell results, copied
    byte for byte, and a manifest that says where each came from."""
    atomic_write_json(run_dir.manifest_path,
                      _manifest(shards.shards, shards.chosen, shards.duplicates))
    run_dir.event("merge_start", inputs=[str(s.path) for s in shards.shards])
    _copy_cells(run_dir, shards.chosen)
