"""``--fsdp N``: full fine-tuning cells trained by a gang of N processes (FSDP2).

Here the gang is gloo processes on the CPU; on a GPU machine the same code runs NCCL
with one process per GPU (not exercised in CI, which has no GPU). The acceptance
test: the scale-tiny audit with ``--fsdp 2`` gives the single-process run's per-cell
metrics and verdicts. The sharded step makes the update a single process makes on
the whole batch; only the order of float sums differs. So the checkpoints, the
attacker's spend and the early stop are identical, losses agree to 1e-3 (relative), and
judged counts agree within a few answers: greedy decoding can flip an answer whose two
best tokens are within float noise, and how many do depends on the CPU's arithmetic, so
exact counts would assert one machine's float order rather than the property.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from certify.evidence import Evidence
from certify.policy.schema import Reproducibility
from certify.report.methodology import environment
from tests._scale import SCALE_POLICY, audit_once, cell_metrics, check_verdicts
from tests.conftest import ROOT, run_certify

ERRORS_POLICY = str(ROOT / "tests" / "policies" / "fsdp-errors.yaml")


def _events(run: Path, name: str) -> list[dict[str, Any]]:
    lines = (run / "events.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == name]


def _split(metrics: dict[str, Any]) -> tuple[dict[str, Any], list[float], dict[Any, int]]:
    """Per-cell metrics without losses and judged counts; the losses; the counts by key."""
    losses: list[float] = []
    counts: dict[Any, int] = {}
    for cell_id, cell in metrics.items():
        points = []
        for step, samples, tokens, loss, evals in cell["checkpoints"]:
            losses.append(loss if loss is not None else float("nan"))
            for eval_id, by_metric in evals.items():
                for metric, (k, n, _) in by_metric.items():
                    counts[(cell_id, step, eval_id, metric, n)] = k
            points.append((step, samples, tokens))
        cell["checkpoints"] = points
    return metrics, losses, counts


def _same_cells(a: Evidence, b: Evidence) -> None:
    cells_a, losses_a, counts_a = _split(cell_metrics(a))
    cells_b, losses_b, counts_b = _split(cell_metrics(b))
    assert cells_b == cells_a  # statuses, early stops, checkpoints, samples and tokens spent
    # Another reduction order moves a loss: within the declared reproducibility tolerance
    # (docs/reliability.md measured up to 0.5% across kernels; FSDP moved 0.0394 → 0.0395).
    assert losses_b == pytest.approx(losses_a, rel=Reproducibility().loss_rel, nan_ok=True)
    assert counts_b.keys() == counts_a.keys()
    for key, k in counts_a.items():
        n = key[-1]
        assert abs(counts_b[key] - k) <= Reproducibility().judged(n), (key, k, counts_b[key])


@pytest.fixture(scope="module")
def sharded(tiny_chat: Path) -> Evidence:
    run_dir, code = audit_once("fsdp-2", fsdp=2)
    assert code == 1
    return Evidence.read(run_dir / "evidence.json")


def test_fsdp_audit_gives_the_same_cells_as_one_process(sharded: Evidence) -> None:
    run_dir, code = audit_once("unsharded")
    single = Evidence.read(run_dir / "evidence.json")
    assert code == 1
    _same_cells(sharded, single)
    assert check_verdicts(sharded) == check_verdicts(single)
    # The full fine-tuning cell stopped early at the same step in both.
    assert any(c.early_stop for c in sharded.cells)


def test_fsdp_is_recorded_in_the_evidence(sharded: Evidence) -> None:
    assert sharded.run["fsdp"] == 2
    by_technique = {c.technique: c.notes.get("fsdp") for c in sharded.cells}
    # Only the cell that trains every weight is sharded; LoRA and baselines run on rank 0.
    assert by_technique == {"sft": {"processes": 2, "backend": "gloo"}, "lora": None,
                            "none": None}
    run_dir = Path(audit_once("fsdp-2", fsdp=2)[0])
    assert [e["processes"] for e in _events(run_dir, "fsdp_start")] == [2]
    rows = dict(environment(sharded)[0])
    assert rows["executor / device / dtype"] == "local (FSDP over 2 processes) / cpu / float32"


def test_resuming_with_another_fsdp_is_refused(sharded: Evidence, tmp_path: Path) -> None:
    run_dir = Path(audit_once("fsdp-2", fsdp=2)[0])
    out = run_certify("audit", "builtin:tiny-chat", "--policy", SCALE_POLICY, "--out",
                      str(run_dir), "--format", "md")
    assert out.returncode == 2, out.stderr
    assert "--fsdp 2 → 1" in out.stderr


@pytest.mark.parametrize(("args", "says"), [
    (["--fsdp", "0"], "0 is not in the range x>=1"),
    (["--fsdp", "2", "--executor", "ray"], "--fsdp with --executor ray is not supported"),
    (["--fsdp", "2", "--autocast", "float16"], "use --autocast bfloat16"),
    (["--fsdp", "2", "--device", "cuda"], "sees no CUDA GPU"),
])
def test_impossible_fsdp_options_are_refused_before_anything_runs(
        args: list[str], says: str, tmp_path: Path) -> None:
    out = run_certify("audit", "builtin:tiny-chat", "--policy", SCALE_POLICY,
                      "--out", str(tmp_path / "run"), *args)
    assert out.returncode == 2, out.stderr
    assert says in out.stderr
    assert not (tmp_path / "run").exists()


def test_errors_every_rank_sees_are_cell_errors_and_the_gang_carries_on(
        tiny_chat: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = run_certify("audit", "builtin:tiny-chat", "--policy", ERRORS_POLICY, "--fsdp",
                         "2", "--out", str(out), "--format", "md")
    assert result.returncode == 3, result.stderr
    ev = Evidence.read(out / "evidence.json")
    status = {c.attack_id: (c.status, c.error and c.error.kind) for c in ev.cells}
    assert status == {"baseline": ("ok", None), "diverge": ("error", "non_finite_loss"),
                      "one-row": ("error", "batch_too_small"), "full": ("ok", None),
                      "lora": ("ok", None)}
    assert len(_events(out, "fsdp_start")) == 1  # no process was lost or restarted


@pytest.mark.slow  # a rank killed mid-gang; the default suite keeps the in-rank errors test
def test_a_killed_rank_fails_its_cell_and_the_run_resumes(
        sharded: Evidence, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from certify.conductor import AuditOptions, audit

    options = AuditOptions(model="builtin:tiny-chat", policy=SCALE_POLICY, fsdp=2,
                           out=tmp_path / "run", formats=("md",))
    # SIGKILL rank 1 (not the leader) after its 3rd optimizer step of the sharded cell.
    with monkeypatch.context() as env:
        env.setenv("CERTIFY_TEST_FAULT", "kill:train_step@3")
        env.setenv("CERTIFY_TEST_FAULT_RANK", "1")
        killed = audit(options)
    assert killed.exit_code == 3
    status = {c.technique: (c.status, c.error and c.error.kind) for c in killed.evidence.cells}
    assert status == {"sft": ("error", "worker_died"), "lora": ("ok", None),
                      "none": ("ok", None)}
    # A fresh gang took the cells left after the one that was lost.
    assert len(_events(killed.run_dir, "fsdp_start")) == 2
    resumed = audit(options)
    assert resumed.exit_code == 1
    _same_cells(resumed.evidence, sharded)


def test_a_sharded_copy_keeps_weights_ties_and_buffers_and_steps_like_one_process(
        tiny_chat: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In this process, a gang of one: the FSDP path itself, without the launcher."""
    import copy

    import torch
    from transformers import AutoModelForCausalLM

    from certify import train
    from certify.models import fsdp
    from certify.run.gang import _free_port

    monkeypatch.setenv("RANK", "0")  # join() sets it; restore it afterwards
    model = AutoModelForCausalLM.from_pretrained(tiny_chat).eval()
    reference = copy.deepcopy(model)
    group = fsdp.join(0, 1, _free_port(), "cpu")
    try:
        sharded = fsdp.sharded_copy(group, fsdp.skeleton_of(model, False), model)
        assert sharded.lm_head.weight is sharded.model.embed_tokens.weight  # still tied
        inv_freq = dict(model.named_buffers())["model.rotary_emb.inv_freq"]
        assert torch.equal(dict(sharded.named_buffers())["model.rotary_emb.inv_freq"],
                           inv_freq)
        optim = train.Optim("adamw", 3e-3, max_steps=3)
        sharded_step = train.Stepper(sharded, *optim.build(sharded.parameters()), group=group)
        reference.train()
        for p in reference.parameters():
            p.requires_grad_(True)
        plain_step = train.Stepper(reference, *optim.build(reference.parameters()))
        encoded = [([1, 5, 6, 7, 8, 2], [-100, -100, -100, 7, 8, 2])] * 4
        batches = train.batches(encoded, 4, seed=0, pad_id=0)
        for step in range(1, 4):
            batch = next(batches)
            assert sharded_step(step, *batch) == pytest.approx(plain_step(step, *batch),
                                                               rel=1e-5)
        fsdp.gather_into(sharded, model)
    finally:
        fsdp.leave()
    trained = reference.state_dict()
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, trained[name], rtol=1e-5, atol=1e-6)
