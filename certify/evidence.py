"""The evidence record: a versioned, field-ordered account of everything run and measured.

``evidence.json`` is written with pydantic's declared field order, so the same
record always serializes to the same bytes. Cells are written one file each while
the audit runs (``cells/<id>.json``); the evidence is collected from them at the
end, with the per-sample JSONL files referenced by sha256. Older versions are
upgraded on read (``_migrate``). Torch-free: an auditor reads it on a laptop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from certify._io import atomic_write_bytes
from certify.stats import Metric

SCHEMA = "certify.evidence/v1"
Verdict = Literal["pass", "fail", "inconclusive", "error"]


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EvalRecord(Record):
    """One evaluation of one model state."""

    eval: str
    plugin: str
    measures: str
    metrics: dict[str, Metric]
    groups: dict[str, dict[str, dict[str, Metric]]] = Field(default_factory=dict)
    """Breakdowns, e.g. {"category": {"weapons": {"harmful": ...}}} or {"task": {...}}."""
    valid: bool = True
    """False when the measurement cannot support a "safe" reading (e.g. cipher not learned)."""
    note: str = ""
    n_samples: int = 0
    extra: dict[str, Any] = Field(default_factory=dict)


class CheckpointRecord(Record):
    """The model after ``step`` optimizer steps, what the attacker had spent, what was measured."""

    step: int
    samples: int = 0
    tokens: int = 0
    flop: float = 0.0
    seconds: float = 0.0
    loss: float | None = None
    evals: dict[str, EvalRecord] = Field(default_factory=dict)


class ErrorInfo(Record):
    kind: str
    message: str
    hint: str | None = None


class EarlyStop(Record):
    step: int
    reason: str


class CellRecord(Record):
    """One cell: an attack configuration × seed on one model, trained once, evaluated along."""

    id: str
    role: Literal["candidate", "reference"]
    attack_id: str
    technique: str
    technique_version: int = 1
    purpose: Literal["harmful", "benign", "baseline"]
    params: dict[str, Any]
    seed: int
    max_steps: int
    status: Literal["ok", "error"]
    error: ErrorInfo | None = None
    checkpoints: list[CheckpointRecord] = Field(default_factory=list)
    early_stop: EarlyStop | None = None
    train_categories: list[str] | None = None
    n_parameters: int = 0
    n_trainable: int = 0
    started: str = ""
    finished: str = ""
    seconds: float = 0.0
    seconds_eval: float = 0.0
    samples_file: str | None = None
    samples_sha256: str | None = None
    notes: dict[str, Any] = Field(default_factory=dict)
    worker: str = ""
    numerics: dict[str, Any] = Field(default_factory=dict)
    """What decided this cell's float arithmetic (certify.environment.numerics): torch, threads,
    deterministic mode, CPU model and flags, kernel capability, BLAS, dtype, device."""


class CheckResult(Record):
    """A check's verdict and the numbers that decided it."""

    id: str
    check: str
    condition: str
    required: bool
    verdict: Verdict
    reason: str
    observed: dict[str, Any] = Field(default_factory=dict)
    threshold: dict[str, Any] = Field(default_factory=dict)
    rows: list[dict[str, Any]] = Field(default_factory=list)
    fragile: list[str] = Field(default_factory=list)
    """The verdicts this check takes when every judged count moves by the policy's
    reproducibility tolerance (certify.assess.fragility); empty when it holds."""


class VerdictRecord(Record):
    overall: Verdict
    exit_code: int
    checks: list[CheckResult]
    conditions: dict[str, Verdict]
    summary: str


class Evidence(Record):
    """Everything an auditor needs to know what was tested, how, and with which result."""

    schema_: str = Field(default=SCHEMA, alias="schema")
    certify_version: str
    run: dict[str, Any]
    environment: dict[str, Any]
    policy: dict[str, Any]
    models: dict[str, dict[str, Any] | None]
    datasets: list[dict[str, Any]] = Field(default_factory=list)
    judges: list[dict[str, Any]] = Field(default_factory=list)
    evaluations: dict[str, dict[str, Any]] = Field(default_factory=dict)
    attacks: list[dict[str, Any]] = Field(default_factory=list)
    cells: list[CellRecord] = Field(default_factory=list)
    verdict: VerdictRecord | None = None
    limitations: list[str] = Field(default_factory=list)
    scope: str = ""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _migrate(cls, data: Any) -> Any:
        if isinstance(data, dict):
            schema = data.get("schema", SCHEMA)
            if schema != SCHEMA:
                raise ValueError(f"unsupported evidence schema {schema!r} (this certify reads "
                                 f"{SCHEMA}); upgrade certify to read it")
        return data

    def to_bytes(self) -> bytes:
        return (self.model_dump_json(indent=2, by_alias=True) + "\n").encode("utf-8")

    def write(self, path: str | Path) -> None:
        atomic_write_bytes(path, self.to_bytes())

    @classmethod
    def read(cls, path: str | Path) -> Evidence:
        return cls.model_validate_json(Path(path).read_bytes())

    def cell(self, cell_id: str) -> CellRecord:
        return next(c for c in self.cells if c.id == cell_id)
