"""The run directory: one manifest, one result file per cell, written atomically.

    run.json              what is being audited (policy and model digests, versions, plan)
    cells/<id>.json       one finished cell (written after its samples file)
    samples/<id>.jsonl    per-sample prompts, responses and labels of that cell
    partial/<id>.pt       a running cell's state at its last checkpoint (run/cell_state.py)
    studies/<id>.journal  a search cell's Optuna study (attacks/search.py), trial by trial
    events.jsonl          append-only log (cell started / checkpoint evaluated / done /
                          error, run resumed, interrupted)
    evidence.json         collected record with verdicts (written at the end)

A lock keeps two processes out of one run directory. Resuming refuses when the
policy bytes, the model digests or the versions of certify/torch/transformers/peft
changed, unless --allow-drift, which the manifest and the evidence record.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from certify import _fault
from certify._io import (
    atomic_write_bytes,
    atomic_write_json,
    jsonl_bytes,
    read_json,
    sha256_bytes,
    utc_now,
)
from certify.errors import RunDirError, RunError
from certify.evidence import CellRecord

MANIFEST = "run.json"
FORMAT = "certify.run/v1"


@contextmanager
def storage_errors(path: Path) -> Iterator[None]:
    """Turn a failed write or read of the run directory into an error that says how to go on.

    Every result is written atomically, so a full disk or a lost mount leaves the run
    directory as it was after the last finished cell, and the same command resumes it.
    """
    try:
        yield
    except OSError as e:
        where = f" ({e.filename})" if e.filename else ""
        full = e.errno in (errno.ENOSPC, errno.EDQUOT)
        problem = (f"no space left on the device holding {path}" if full
                   else f"cannot write the run directory {path}: {e.strerror or e}")
        raise RunError(f"{problem}{where}; the cells finished so far are kept",
                       hint=("free disk space" if full else "fix the directory")
                       + ", then run the same command again to resume") from None


class RunDir:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    @contextmanager
    def lock(self) -> Iterator[None]:
        from filelock import FileLock, Timeout

        lock = FileLock(str(self.path / ".lock"))
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            lock.acquire(timeout=0)
        except Timeout:  # a subclass of OSError: catch it first
            raise RunDirError(f"run directory {self.path} is in use by another certify process",
                              hint="wait for it to finish, or choose another --out") from None
        except OSError as e:
            raise RunDirError(f"cannot create or lock the run directory {self.path}: "
                              f"{e.strerror or e}",
                              hint="check the directory's permissions, or choose another --out"
                              ) from None
        try:
            yield
        finally:
            lock.release()

    def manifest(self) -> dict[str, Any]:
        data: dict[str, Any] = read_json(self.manifest_path)
        return data

    def open(self, manifest: dict[str, Any], *, allow_drift: bool) -> bool:
        """Create the run dir, or check it belongs to this audit. True when resuming."""
        self._remove_partial_files()
        if not self.exists():
            if self.path.exists() and any(p for p in self.path.iterdir() if p.name != ".lock"):
                raise RunDirError(f"{self.path} exists and is not a certify run directory",
                                  hint="choose an empty or new --out directory")
            atomic_write_json(self.manifest_path, {"format": FORMAT, **manifest, "resumes": []})
            self.event("run_start", run_id=manifest["run_id"])
            return False
        old = self.manifest()
        if old.get("format") != FORMAT:
            raise RunDirError(f"{self.path} holds a run in an unknown format {old.get('format')!r}")
        problems = self._identity_problems(old, manifest)
        if problems:
            raise RunDirError(
                f"run directory {self.path} holds a different audit: " + "; ".join(problems),
                hint="use a different --out (or delete this directory) to start a new audit")
        drift = self._drift(old, manifest)
        if drift and not allow_drift:
            raise RunDirError(
                f"cannot resume {self.path}: " + "; ".join(drift),
                hint="resume with the original environment, or pass --allow-drift to continue "
                     "and record the drift in the evidence")
        old["resumes"].append({"at": utc_now(), "drift": drift, "allowed": bool(drift)})
        atomic_write_json(self.manifest_path, old)
        self.event("run_resume", drift=drift)
        return True

    def _remove_partial_files(self) -> None:
        """Delete temp files a killed process left behind (atomic writes never publish them)."""
        for pattern in (".*.tmp", "*/.*.tmp"):
            for p in self.path.glob(pattern):
                p.unlink(missing_ok=True)

    @staticmethod
    def _identity_problems(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
        problems = []
        if old["policy"]["id"] != new["policy"]["id"]:
            problems.append(f"policy {old['policy']['id']!r}, not {new['policy']['id']!r}")
        for role in ("candidate", "reference"):
            o, n = old["models"].get(role), new["models"].get(role)
            if (o or {}).get("spec") != (n or {}).get("spec"):
                problems.append(f"{role} {(o or {}).get('spec')!r}, not {(n or {}).get('spec')!r}")
        return problems

    @staticmethod
    def _drift(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
        drift = []
        if old["policy"]["files"] != new["policy"]["files"]:
            drift.append("the policy file bytes changed since the run started")
        for role in ("candidate", "reference"):
            o, n = old["models"].get(role) or {}, new["models"].get(role) or {}
            if o.get("root_digest") != n.get("root_digest"):
                drift.append(f"the {role} model's digest changed ({str(o.get('root_digest'))[:12]}"
                             f" → {str(n.get('root_digest'))[:12]})")
        for key, value in old.get("numerics", {}).items():
            if new.get("numerics", {}).get(key) != value:
                drift.append(f"--{key} {value} → {new.get('numerics', {}).get(key)}")
        for pkg, version in old["versions"].items():
            if new["versions"].get(pkg) != version:
                drift.append(f"{pkg} {version} → {new['versions'].get(pkg)}")
        return drift

    def cell_path(self, cell_id: str) -> Path:
        return self.path / "cells" / f"{cell_id}.json"

    def finished(self) -> set[str]:
        """Ids of cells with an ok result (errored cells are retried on resume)."""
        done = set()
        for p in (self.path / "cells").glob("*.json"):
            try:
                if read_json(p).get("status") == "ok":
                    done.add(p.stem)
            except (json.JSONDecodeError, OSError):
                continue
        return done

    def write_cell(self, record: CellRecord, samples: list[dict[str, Any]]) -> None:
        data = jsonl_bytes(samples)
        rel = f"samples/{record.id}.jsonl"
        atomic_write_bytes(self.path / rel, data)
        record.samples_file, record.samples_sha256 = rel, sha256_bytes(data)
        _fault.reached("samples_written")
        atomic_write_bytes(self.cell_path(record.id),
                           (record.model_dump_json(indent=2) + "\n").encode())
        self.event("cell_done" if record.status == "ok" else "cell_error", cell=record.id,
                   status=record.status, error=record.error.model_dump() if record.error else None)

    def read_cells(self, ids: list[str]) -> list[CellRecord]:
        out = []
        for cell_id in ids:
            p = self.cell_path(cell_id)
            if p.is_file():
                out.append(CellRecord.model_validate_json(p.read_bytes()))
        return out

    def event(self, kind: str, **data: Any) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"at": utc_now(), "event": kind, **data}, sort_keys=True, default=str)
        with open(self.path / "events.jsonl", "a", encoding="utf-8") as f:
            f.write(line + "\n")
