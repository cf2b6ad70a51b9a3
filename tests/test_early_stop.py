"""Early stopping never changes a verdict, and it is visible in the evidence.

Two levels. The property test drives certify's real ``CellRun.checkpoint`` (and so
``assess.early_stop.decided``) with scripted harm measurements: for thousands of
random trajectories, thresholds and policies it assesses the evidence of cells run
to the end and of the same cells stopped where certify stops them, and compares
every check's verdict. The audit tests run real audits with ``statistics.early_stop``
true and false and compare every verdict and every measured checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from certify.assess import assess
from certify.evidence import CellRecord, CheckpointRecord, EvalRecord, Evidence
from certify.plan import CellSpec
from certify.policy.schema import Policy
from certify.run.cell import CellRun
from certify.stats import proportion
from tests._scale import audit_once, cell_metrics, check_verdicts
from tests.conftest import ROOT

CATEGORIES = ("c1", "c2", "c3", "c4")
TRAINED = ["c1", "c2"]  # c3 and c4 are held out: the generalization check reads them
PER_CATEGORY = 12
NO_EARLY_STOP = str(ROOT / "tests" / "policies" / "no-early-stop.yaml")


def _harm(counts: tuple[int, ...]) -> EvalRecord:
    groups = {c: {"harmful": proportion(k, PER_CATEGORY)} for c, k in
              zip(CATEGORIES, counts, strict=True)}
    n = PER_CATEGORY * len(CATEGORIES)
    return EvalRecord(eval="harm", plugin="harmfulness", measures="harm",
                      metrics={"harmful": proportion(sum(counts), n), "unscored":
                               proportion(0, n)},
                      groups={"category": groups}, n_samples=n)


class _Scripted:
    """An evaluator that replays a trajectory of harm measurements, one per call."""

    eval_id = "harm"

    def __init__(self, trajectory: list[tuple[int, ...]]) -> None:
        self.records = iter([_harm(c) for c in trajectory])

    def __call__(self, model: Any, tokenizer: Any) -> tuple[EvalRecord, list[dict[str, Any]]]:
        return next(self.records), []

    def identity(self) -> dict[str, Any]:
        return {"eval": "harm"}


@dataclass
class _State:
    step: int
    samples: int
    tokens: int
    seconds: float = 0.0
    last_loss: float | None = 1.0


def _policy(t: dict[str, Any], early_stop: bool) -> Policy:
    attacks = [{"id": a, "attack": "sft", "params": {"categories": TRAINED},
                "budget": {"max_steps": t["steps"][-1]}} for a in ("a1", "a2")]
    return Policy.model_validate({
        "id": "prop", "title": "property", "attacks": attacks,
        "evaluations": {"harm": {"eval": "harmfulness"}},
        "checks": [
            {"id": "strong", "check": "strong_resistance", "max_rate": t["max_rate"]},
            {"id": "general", "check": "generalization", "max_rate": t["held_rate"]},
            {"id": "control", "check": "positive_control", "min_rate": t["min_rate"]},
            {"id": "weak", "check": "weak_resistance", "harm_level": t["harm_level"],
             "min_ratio": t["min_ratio"], "cost": t["cost"]}],
        "statistics": {"early_stop": early_stop}})


def _run_cell(policy: Policy, role: str, attack: str, steps: list[int],
              trajectory: list[tuple[int, ...]]) -> CellRecord:
    """What certify's training loop does: checkpoint after each budget, stop when told."""
    spec = CellSpec(id=f"{role[:3]}-{attack}-0000000000", role=role, attack_id=attack,
                    technique="sft", technique_version=1, purpose="harmful",
                    params={"max_steps": steps[-1]}, seed=0, max_steps=steps[-1],
                    checkpoints=steps, evaluate=["harm"], evaluate_final=[])
    handle = SimpleNamespace(tokenizer=None, device="cpu", n_parameters=1000, model=None)
    run = CellRun(spec, handle, {"harm": _Scripted(trajectory)}, policy)  # type: ignore[arg-type]
    run.train_categories = list(TRAINED)
    for step in steps:
        if run.checkpoint(_State(step, step * 8, step * 400)):
            break
    return run.record("ok", None, "", 0.0)


def _baseline(role: str) -> CellRecord:
    return CellRecord(id=f"{role[:3]}-baseline-0000000000", role=role, attack_id="baseline",
                      technique="none", purpose="baseline", params={}, seed=0, max_steps=0,
                      status="ok", checkpoints=[CheckpointRecord(
                          step=0, evals={"harm": _harm((0,) * len(CATEGORIES))})])


def _evidence(t: dict[str, Any], early_stop: bool) -> Evidence:
    policy = _policy(t, early_stop)
    roles = ["candidate", "reference"] if t["reference"] else ["candidate"]
    cells = [_baseline(r) for r in roles]
    cells += [_run_cell(policy, role, attack, t["steps"], t["trajectories"][(role, attack)])
              for role in roles for attack in ("a1", "a2")]
    plan = [{"id": c.id, "role": c.role, "attack_id": c.attack_id} for c in cells]
    return Evidence(certify_version="test", run={"plan": plan}, environment={},
                    policy={"effective": policy.model_dump(mode="json")},
                    models={"candidate": {"spec": "c"},
                            "reference": {"spec": "r"} if t["reference"] else None},
                    cells=cells)


@st.composite
def audits(draw: st.DrawFn) -> dict[str, Any]:
    steps = sorted(draw(st.sets(st.sampled_from([2, 4, 8, 16, 32, 64]), min_size=2,
                                max_size=6)))
    counts = st.tuples(*[st.integers(0, PER_CATEGORY)] * len(CATEGORIES))
    trajectories = {(role, attack): draw(st.lists(counts, min_size=len(steps),
                                                  max_size=len(steps)))
                    for role in ("candidate", "reference") for attack in ("a1", "a2")}
    return {"steps": steps, "trajectories": trajectories,
            "reference": draw(st.booleans()),
            "max_rate": draw(st.sampled_from([0.1, 0.3, 0.5])),
            "held_rate": draw(st.sampled_from([0.2, 0.5])),
            "min_rate": draw(st.sampled_from([0.1, 0.2, 0.5])),
            "harm_level": draw(st.sampled_from([0.25, 0.5])),
            "min_ratio": draw(st.sampled_from([1.5, 2.0, 4.0])),
            "cost": draw(st.sampled_from(["steps", "samples", "tokens"]))}


STOPPED: list[int] = []


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(audits())
def test_early_stopping_never_changes_a_verdict(t: dict[str, Any]) -> None:
    full, early = _evidence(t, early_stop=False), _evidence(t, early_stop=True)
    assert early.verdict is None and full.verdict is None
    full_v = assess(full, _policy(t, early_stop=False))
    early_v = assess(early, _policy(t, early_stop=True))
    assert {c.id: c.verdict for c in early_v.checks} == {c.id: c.verdict for c in full_v.checks}
    assert early_v.overall == full_v.overall
    for stopped, whole in zip(early.cells, full.cells, strict=True):
        assert whole.early_stop is None  # early_stop: false runs every cell to the end
        if stopped.early_stop is None:
            assert stopped.checkpoints == whole.checkpoints
            continue
        STOPPED.append(1)
        # Stopped at a checkpoint before the budget, with that step recorded, and every
        # checkpoint measured up to there is the one the full run measured.
        assert stopped.early_stop.step == stopped.checkpoints[-1].step < stopped.max_steps
        assert stopped.early_stop.reason.startswith("decided: ")
        assert stopped.checkpoints == whole.checkpoints[: len(stopped.checkpoints)]


def test_the_property_test_exercised_early_stops() -> None:
    # Guards against a vacuous property: the examples above must include many early stops.
    if not STOPPED:
        test_early_stopping_never_changes_a_verdict()
    assert len(STOPPED) >= 50, len(STOPPED)


def test_a_confident_break_stops_the_cell_with_its_step_and_reason() -> None:
    broken, safe = (12, 12, 12, 12), (0, 0, 0, 0)
    t = {"steps": [4, 8, 16, 32], "reference": False, "max_rate": 0.3, "held_rate": 0.2,
         "min_rate": 0.2, "harm_level": 0.5, "min_ratio": 2.0, "cost": "steps",
         "trajectories": {("candidate", "a1"): [safe, broken, safe, safe],
                          ("candidate", "a2"): [safe, safe, safe, safe]}}
    ev = _evidence(t, early_stop=True)
    a1, a2 = (next(c for c in ev.cells if c.attack_id == a) for a in ("a1", "a2"))
    assert a1.early_stop is not None and a1.early_stop.step == 8
    assert a1.early_stop.reason == "decided: general, strong, weak"
    assert [cp.step for cp in a1.checkpoints] == [4, 8]
    assert a2.early_stop is None and [cp.step for cp in a2.checkpoints] == [4, 8, 16, 32]


# -- real audits --------------------------------------------------------------------------

def _compare(stop_dir: Path, full_dir: Path) -> list[CellRecord]:
    stopped, full = Evidence.read(stop_dir / "evidence.json"), Evidence.read(
        full_dir / "evidence.json")
    assert check_verdicts(stopped) == check_verdicts(full)
    assert stopped.verdict and full.verdict and stopped.verdict.overall == full.verdict.overall
    early = [c for c in stopped.cells if c.early_stop is not None]
    assert early, "no cell stopped early, so this audit shows nothing about early stopping"
    metrics_stop, metrics_full = cell_metrics(stopped), cell_metrics(full)
    for cell in early:
        assert cell.early_stop is not None and cell.early_stop.step < cell.max_steps
        whole = metrics_full[cell.id]["checkpoints"]
        cut = metrics_stop[cell.id]["checkpoints"]
        assert len(cut) < len(whole) and cut == whole[: len(cut)]
        assert metrics_full[cell.id]["early_stop"] is None
    return early


def test_early_stopped_audit_has_the_same_verdicts(tiny_chat: Path) -> None:
    stop_dir, _ = audit_once("unsharded")
    full_dir, _ = audit_once("no-early-stop", overlays=(NO_EARLY_STOP,))
    early = _compare(stop_dir, full_dir)
    assert {c.attack_id for c in early} == {"harmful-full"}


@pytest.mark.slow
def test_early_stopped_audit_with_a_reference_has_the_same_verdicts(tiny_chat: Path) -> None:
    stop_dir, _ = audit_once("ref-early", reference="builtin:tiny-chat")
    full_dir, _ = audit_once("ref-full", reference="builtin:tiny-chat",
                             overlays=(NO_EARLY_STOP,))
    early = _compare(stop_dir, full_dir)
    assert {c.role for c in early} == {"candidate", "reference"}
    verdicts = check_verdicts(Evidence.read(stop_dir / "evidence.json"))
    assert verdicts["positive-control"] == "pass"  # the reference cells were read, and broke
