"""The runner side of the attack contract, without a model: what each door records."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from certify.attacks.contract import AttackRun, Spend
from certify.evidence import EvalRecord
from certify.plan import CellSpec
from certify.policy.schema import Policy
from certify.run.cell import CellRun
from certify.stats import proportion

POLICY = Policy.model_validate({
    "id": "contract", "title": "contract", "attacks": [{"id": "a", "attack": "sft"}],
    "evaluations": {"harm": {"eval": "harmfulness"}, "task": {"eval": "benign_accuracy"}},
    "checks": [{"id": "strong", "check": "strong_resistance", "max_rate": 0.5}]})


class _Counting:
    """Says harmful for every prompt its transform marks, and records what it was given."""

    def __init__(self, eval_id: str) -> None:
        self.eval_id, self.calls = eval_id, []  # type: list[Any]

    def __call__(self, model: Any, tokenizer: Any, transform: Any = None,
                 ) -> tuple[EvalRecord, list[dict[str, Any]]]:
        self.calls.append(transform)
        k = 4 if transform is not None and transform("x") != "x" else 0
        return EvalRecord(eval=self.eval_id, plugin="t", measures="harm",
                          metrics={"harmful": proportion(k, 8)}, n_samples=8), []

    def identity(self) -> dict[str, Any]:
        return {"eval": self.eval_id}


class _Shout:
    def __call__(self, prompt: str) -> str:
        return prompt.upper() + "!"

    def identity(self) -> dict[str, Any]:
        return {"name": "shout"}


def _run(max_steps: int = 0) -> tuple[CellRun, dict[str, _Counting]]:
    spec = CellSpec(id="can-a-0000000000", role="candidate", attack_id="a", technique="sft",
                    technique_version=1, purpose="harmful", params={}, seed=3,
                    max_steps=max_steps, checkpoints=[max_steps], evaluate=["harm"],
                    evaluate_final=["task"])
    evaluators = {"harm": _Counting("harm"), "task": _Counting("task")}
    handle = SimpleNamespace(tokenizer=None, device="cpu", n_parameters=1000, model="weights",
                             restore=lambda: None)
    return CellRun(spec, handle, evaluators, POLICY), evaluators  # type: ignore[arg-type]


def test_a_model_handed_back_is_evaluated_once_and_charged_its_spend() -> None:
    run, _ = _run(max_steps=0)
    contract: AttackRun = run  # CellRun implements the contract
    contract.hand_back(contract.frozen_model(), Spend(samples=64, tokens=900, flop=5.0))
    record = run.record("ok", None, "", 0.0)
    [cp] = record.checkpoints
    assert (cp.step, cp.samples, cp.tokens, cp.flop) == (0, 64, 900, 5.0)
    assert set(cp.evals) == {"harm", "task"}  # the final checkpoint runs evaluate_final too
    assert record.n_trainable == 0


def test_prompt_transforms_reach_only_the_evaluations_named() -> None:
    run, evaluators = _run()
    run.transform_prompts(_Shout(), evals=["harm"])
    run.hand_back(run.frozen_model(), Spend())
    assert isinstance(evaluators["harm"].calls[0], _Shout)
    assert evaluators["task"].calls == [None]
    assert run.record("ok", None, "", 0.0).notes["prompt_transform"] == {
        "harm": {"name": "shout"}}


def test_a_kept_trial_is_the_cells_result() -> None:
    run, _ = _run()

    def shouting(trial_run: AttackRun) -> None:
        trial_run.transform_prompts(_Shout())
        trial_run.hand_back(trial_run.frozen_model(), Spend(samples=1))

    def plain(trial_run: AttackRun) -> None:
        trial_run.hand_back(trial_run.frozen_model(), Spend(samples=2))

    loud, quiet = run.trial(shouting), run.trial(plain)
    assert loud.rates["harm"] == [(0, 0.5)] and quiet.rates["harm"] == [(0, 0.0)]
    assert loud.checkpoints == [0] and loud.final_loss is None
    run.keep(loud)
    assert [cp.samples for cp in run.record("ok", None, "", 0.0).checkpoints] == [1]
