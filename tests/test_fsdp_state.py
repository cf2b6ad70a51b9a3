"""Resume inside a sharded cell: a 2-process gloo gang keeps and takes back its state.

Without an audit (the kill/resume audit is tests/test_cell_state.py's slow FSDP test):
rank 0 is a real ``Leader`` and rank 1 a real ``follow`` loop, training the tiny demo
model sharded with FSDP2 through ``certify.train.train`` with a ``CellKeeper``. A first
run keeps its state at two checkpoints; a second run of the same cell in the same gang
starts from the kept one and must end with the same weights, bit for bit (the same two
processes sum in the same order), after running only the steps that followed. A state
kept by another world size, or one that lacks a rank's file, is ignored: the cell
trains from step 0 again, and says why.
"""

from __future__ import annotations

import copy
import json
import logging
import multiprocessing
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

STEPS, CHECKPOINTS = 6, [2, 4]
CELL = "c0ffee"


class _Cell:
    """The side of a CellRun the keeper reads: the records so far, as plain data."""

    def __init__(self) -> None:
        self.spec = SimpleNamespace(id=CELL)
        self.records: list[int] = []
        self.resumed = False

    def kept(self) -> dict[str, Any]:
        return {"records": list(self.records)}

    def resume_from(self, kept: dict[str, Any]) -> None:
        self.records, self.resumed = list(kept["records"]), True


def _train(leader: Any, original: Any, partial: Path) -> dict[str, Any]:
    """One run of the cell: shard the original weights, train to STEPS with the keeper."""
    import torch

    from certify import train
    from certify.run.cell_state import CellKeeper

    handle = SimpleNamespace(model=copy.deepcopy(original),
                             options=SimpleNamespace(gradient_checkpointing=False))
    model = leader.shard(handle)
    optim = train.Optim("adamw", 1e-2, max_steps=STEPS)
    optimizer, schedule = optim.build(model.parameters())
    steps = [0]
    optimizer.register_step_post_hook(lambda *_: steps.__setitem__(0, steps[0] + 1))
    cell = _Cell()

    def on_checkpoint(state: Any) -> bool:
        cell.records.append(state.step)
        return False

    encoded = [([1, 5 + i, 6, 7 + i, 8, 2], [-100, -100, -100, 7 + i, 8, 2]) for i in range(6)]
    keeper = CellKeeper(cell, partial / f"{CELL}.pt", 1, True, leader)
    with leader.fitting(optim, None, 4, handle.model) as relay:
        state = train.train(model, relay(train.batches(encoded, 4, seed=0, pad_id=0)),
                            optimizer, schedule, STEPS, CHECKPOINTS, on_checkpoint,
                            group=leader.group, keeper=keeper)
    sharded = all(type(v).__name__ == "DTensor" for s in optimizer.state.values()
                  for k, v in s.items() if k != "step")
    leader.release()
    return {"weights": {k: v.clone() for k, v in handle.model.state_dict().items()},
            "losses": torch.tensor(state.losses), "records": cell.records,
            "optimizer_steps": steps[0], "sharded_optimizer_state": sharded,
            "resumed": cell.resumed}


def _follower(port: int) -> None:
    """Rank 1, in a process of its own: follow the leader's broadcasts until ``stop``."""
    import torch

    from certify.models import fsdp
    from certify.run.gang import follow

    torch.set_num_threads(1)
    group = fsdp.join(1, 2, port, "cpu")
    try:
        follow(group)
    finally:
        fsdp.leave()


def _lead(port: int, model_dir: Path, partial: Path) -> dict[str, Any]:
    """Rank 0, in this process: the cell's run uninterrupted, resumed, and from two
    states that must be ignored."""
    import torch
    from transformers import AutoModelForCausalLM

    from certify.models import fsdp
    from certify.run.gang import Leader

    original = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    leader = Leader(fsdp.join(0, 2, port, "cpu"))
    try:
        runs: dict[str, Any] = {"whole": _train(leader, original, partial)}
        runs["kept"] = sorted(str(p.relative_to(partial)) for p in partial.rglob("*.pt"))
        runs["resumed"] = _train(leader, original, partial)
        # The manifest says another world size: ignored.
        manifest = partial / f"{CELL}.pt"
        saved = torch.load(manifest, weights_only=True)
        cell = json.loads(saved["cell"])
        torch.save({**saved, "cell": json.dumps({**cell, "world": 3})}, manifest)
        runs["other_world"] = _train(leader, original, partial)
        # Rank 1's shard is missing: ignored by every rank.
        next(partial.rglob("rank1.pt")).unlink()
        runs["incomplete"] = _train(leader, original, partial)
        leader.stop()
        return runs
    finally:
        fsdp.leave()


@pytest.fixture(scope="module")
def runs(tiny_chat: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    import os

    from certify.run.gang import _free_port

    port = _free_port()
    rank1 = multiprocessing.get_context("spawn").Process(target=_follower, args=(port,))
    rank1.start()
    handler, logger = _Lines(), logging.getLogger("certify.run.cell_state")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    env_rank = os.environ.get("RANK")
    try:
        runs = _lead(port, tiny_chat, tmp_path_factory.mktemp("fsdp-state") / "partial")
        rank1.join(timeout=60)
        assert rank1.exitcode == 0
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        if env_rank is None:  # join() sets it, as torchrun would
            os.environ.pop("RANK", None)
        else:
            os.environ["RANK"] = env_rank
        if rank1.is_alive():
            rank1.kill()
            rank1.join()
    runs["logs"] = "\n".join(handler.lines)
    return runs


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_a_sharded_cell_resumes_from_its_kept_state_exactly(runs: dict[str, Any]) -> None:
    import torch

    whole, resumed = runs["whole"], runs["resumed"]
    assert whole["optimizer_steps"] == STEPS and whole["records"] == [2, 4]
    assert whole["sharded_optimizer_state"] and resumed["sharded_optimizer_state"]
    # Only the latest state: rank 0's in the manifest, rank 1's beside it.
    assert runs["kept"] == [f"{CELL}.pt", f"{CELL}.shards/call1-step4/rank1.pt"]
    assert resumed["optimizer_steps"] == STEPS - 4  # steps 1-4 were not run again
    assert resumed["resumed"] and resumed["records"] == [2, 4]  # kept with the state
    assert torch.equal(resumed["losses"], whole["losses"])
    for name, value in whole["weights"].items():
        assert torch.equal(resumed["weights"][name], value), name
        # A cell that ignores its state trains from step 0 to the same weights.
        assert torch.equal(runs["incomplete"]["weights"][name], value), name
    assert "cell c0ffee resumes from its state at step 4" in runs["logs"]


@pytest.mark.parametrize(("run", "says"), [
    ("other_world", "trained by an FSDP gang of 3 processes; this run trains it by an FSDP "
                    "gang of 2 processes: the state is ignored"),
    ("incomplete", "lacks a readable shard of some FSDP process"),
])
def test_a_state_of_another_gang_or_missing_a_shard_is_ignored(runs: dict[str, Any], run: str,
                                                               says: str) -> None:
    assert runs[run]["optimizer_steps"] == STEPS  # from step 0, on every rank
    assert not runs[run]["resumed"] and runs[run]["records"] == [2, 4]  # evaluated again
    assert says in runs["logs"]
