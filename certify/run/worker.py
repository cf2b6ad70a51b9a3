"""A worker runs cells: it loads each model once and builds each evaluator once.

The driver gives every worker the same :class:`WorkerSetup` (plain data, so it can
be shipped to a Ray actor); workers return records and never write the run
directory themselves, so resume behaves the same with any executor.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from certify.evals.base import EvalContext, Evaluator
from certify.evidence import CellRecord
from certify.plan import CellSpec
from certify.policy.schema import Policy
from certify.run.progress import CheckpointNote

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerSetup:
    policy: Policy
    """The effective policy (parsed once, by the conductor)."""
    models: dict[str, dict[str, Any]]
    """role → {"source": {...}, "identity": {...}}."""
    device: str = "cpu"
    dtype: str = "float32"
    autocast: str | None = None
    trust_remote_code: bool = False
    allow_pickle: bool = False
    gradient_checkpointing: bool = False
    threads: int | None = None
    keep_cell_state: bool = False
    """Keep each cell's training state at its checkpoints, so a killed cell resumes there."""


class Worker:
    def __init__(self, setup: WorkerSetup, gang: Any = None) -> None:
        from certify.models.load import LoadOptions, ModelPool
        from certify.models.source import ModelIdentity, ModelSource

        if setup.threads:
            import torch

            torch.set_num_threads(setup.threads)
        self.setup = setup
        self.gang = gang
        """With ``--fsdp``: the leader's side of the gang (certify.run.gang.Leader)."""
        self.policy = setup.policy
        sources = {}
        for role, m in setup.models.items():
            src = dict(m["source"])
            src["path"] = Path(src["path"])
            sources[role] = (ModelSource(**src), ModelIdentity(**m["identity"]))
        self.pool = ModelPool(sources, LoadOptions(
            device=setup.device, dtype=setup.dtype, trust_remote_code=setup.trust_remote_code,
            allow_pickle=setup.allow_pickle,
            gradient_checkpointing=setup.gradient_checkpointing))
        self.evaluators: dict[str, Evaluator] = {}
        self.baselines: dict[str, CellRecord] = {}
        """role → its finished baseline cell (run here, or handed in by :meth:`know`):
        early stopping of a capability-bounded check compares with it."""

    def know(self, records: list[CellRecord]) -> None:
        """Baseline cells finished before this worker started (a resumed run's)."""
        for record in records:
            if record.attack_id == "baseline" and record.status == "ok":
                self.baselines[record.role] = record

    def evaluator(self, eval_id: str) -> Evaluator:
        if eval_id not in self.evaluators:
            from certify import registry

            entry = self.policy.evaluations[eval_id]
            spec = registry.get("eval", entry.eval)
            ctx = EvalContext(eval_id, self.setup.device, self.policy.statistics.confidence)
            self.evaluators[eval_id] = spec.fn(spec.params.model_validate(entry.params), ctx)
        return self.evaluators[eval_id]

    def prepare(self, specs: list[CellSpec]) -> None:
        """Build every evaluation the cells need: unusable evaluation data fails now."""
        for eval_id in sorted({e for spec in specs for e in spec.evaluate + spec.evaluate_final}):
            self.evaluator(eval_id)

    def run(self, spec: CellSpec, on_checkpoint: Callable[[CheckpointNote], None] | None = None,
            state_path: Path | None = None) -> tuple[CellRecord, list[dict[str, Any]]]:
        """Run ``spec``; ``on_checkpoint`` hears of each evaluated checkpoint as it happens.
        With ``state_path`` the cell resumes from the state kept there and, when
        ``setup.keep_cell_state``, keeps its own (certify.run.cell_state)."""
        import torch

        from certify.environment import numerics
        from certify.run.cell import run_cell
        from certify.run.cell_state import KeepState

        evaluators = {e: self.evaluator(e) for e in spec.evaluate + spec.evaluate_final}
        autocast = getattr(torch, self.setup.autocast) if self.setup.autocast else None
        record, samples = run_cell(spec, self.pool.get(spec.role), evaluators, self.policy,
                                   autocast, gang=self.gang, on_checkpoint=on_checkpoint,
                                   keep=None if state_path is None else
                                   KeepState(state_path, self.setup.keep_cell_state),
                                   baseline=self.baselines.get(spec.role))
        record.numerics = numerics(self.setup.device, self.setup.dtype, self.setup.autocast)
        self.know([record])
        return record, samples
