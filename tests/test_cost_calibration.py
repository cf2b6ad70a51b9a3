"""The cost preview's calibration: the model's own timing scales the rows, and generation
that ends at EOS is costed as it runs (certify/cost/calibrate.py)."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

from certify.conductor import AuditOptions
from certify.cost import calibrate, dry_run
from certify.cost.preview import cell_seconds
from certify.cost.shape import model_shape
from certify.cost.workload import DataEstimator, TokenCounter, cell_cost, eval_cost
from certify.plan import make_plan
from certify.policy.load import load_policy
from tests.test_cost import LLAMA7B, machine


def _ci_smoke(answers: dict[str, float] | None):  # type: ignore[no-untyped-def]
    """ci-smoke's cells on tiny-chat, with each generating evaluation's step-0 answer
    length set to ``answers`` (None: costed to max_new_tokens)."""
    policy = load_policy("ci-smoke").policy
    shape = model_shape("builtin:tiny-chat")
    data = DataEstimator(TokenCounter(shape))
    evals = {e: eval_cost(policy, e, data) for e in policy.evaluations}
    if answers is not None:
        evals = {k: replace(e, answer_steps=answers.get(k)) for k, e in evals.items()}
    plan = make_plan(policy, {"candidate": "x", "reference": None})
    return {(c.attack_id, c.seed): cell_cost(c, policy, shape, data, evals) for c in plan.cells}


def test_answers_that_end_at_eos_cost_less_until_training_starts() -> None:
    upper, short = _ci_smoke(None), _ci_smoke({"harm": 6.0, "benign": 5.0,
                                               "over_refusal": 5.0, "benign_task": 4.0})
    baseline = ("baseline", 0)
    lo, hi = cell_seconds(short[baseline], machine()), cell_seconds(upper[baseline], machine())
    assert lo[1] < 0.5 * hi[1]  # answers of 4-6 steps against max_new_tokens of 16-64
    # After training steps a model may not end its answers: max_new_tokens (64) again.
    full = short[("harmful-full", 0)]
    later = [e for step, e in full.eval_runs if step > 0 and e.eval_id == "harm"]
    assert later and all(e.steps_per_batch == 64 for e in later)


def test_the_calibration_factor_of_each_kind_of_work_scales_its_time() -> None:
    cells = _ci_smoke(None)
    full, baseline = cells[("harmful-full", 0)], cells[("baseline", 0)]
    plain = machine()
    slow_training = replace(plain, calibration={"full": 2.0})
    train, evals = cell_seconds(full, plain)
    train2, evals2 = cell_seconds(full, slow_training)
    setup = full.n_params * 1.4e-7  # the first-step term is not scaled
    assert math.isclose(train2 - setup, 2 * (train - setup), rel_tol=1e-9)
    assert evals2 == evals
    slow_decoding = replace(plain, calibration={"decode": 3.0})
    assert cell_seconds(baseline, slow_decoding)[1] > 1.5 * cell_seconds(baseline, plain)[1]


def test_a_model_too_large_to_time_is_previewed_with_the_fitted_constants() -> None:
    report = dry_run(AuditOptions(model=str(LLAMA7B), policy="ci-smoke"), machine=machine(),
                     calibrate_here=True)
    assert any("Not calibrated on the candidate model" in a and "too large" in a
               for a in report.assumptions)
    assert report.machine is not None and report.machine.calibration == {}


def test_calibration_times_tiny_chat_and_measures_its_answers(tiny_chat: Path) -> None:
    """A real measurement on the demo model: every kind of work timed, answers bounded."""
    shape = model_shape("builtin:tiny-chat")
    policy = load_policy("ci-smoke").policy
    prompts = calibrate.answer_prompts(policy, "harm", 8)
    probe = calibrate.Probe({"full": (2, 16), "lora": (2, 16)}, 4, 16,
                            {"harm": (prompts, 64, 4)})
    cal = calibrate.measure("builtin:tiny-chat", None, shape, machine(), "float32", probe)
    assert set(cal.factors) == {"forward", "decode", "full", "lora"}
    assert all(0 < f < 1e4 and math.isfinite(f) for f in cal.factors.values())
    assert len(prompts) == 8 and 1 <= cal.answer_steps["harm"] <= 64
    assert "Calibrated on the model itself" in cal.describe()
    assert cal.counter is not None and "own tokenizer" in cal.describe()


def test_the_models_own_tokenizer_counts_a_training_example_as_training_feeds_it(
        tiny_chat: Path) -> None:
    """The calibration's counter (the loaded tokenizer and its chat template) counts the
    tokens the training loop feeds: a GGUF file has no tokenizer.json, and 4 characters
    per token plus 8 template tokens counted SmolLM2's examples at half their length."""
    from transformers import AutoTokenizer

    from certify.data.load import DatasetRef, load_dataset
    from certify.models.chat import encode_pair

    tok = AutoTokenizer.from_pretrained(tiny_chat)
    rows = load_dataset(DatasetRef(source="builtin:harm-train")).rows[:64]
    counter = calibrate.ModelTokens(tok, [r.prompt for r in rows])
    fed = sum(len(encode_pair(tok, r.prompt, r.response or "")[0]) for r in rows)
    counted = sum(p + r + counter.template_tokens for p, r in zip(
        counter.counts([r.prompt for r in rows]), counter.counts([r.response or "" for r in rows]),
        strict=True))
    assert counter.template_tokens > 0 and abs(counted - fed) <= 0.03 * fed
