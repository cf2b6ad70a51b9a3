"""The discrimination test: the audit PASSes a defense that holds and FAILs one that does not.

Two calibration models whose right verdict is known from the literature
(docs/calibration.md), audited under the shipped `calibration` policy against the
model they both start from, through the real CLI, signed and verified:

- builtin:tiny-chat-filtered never read the hazard domain (Deep Ignorance in miniature):
  relearning on other facts of the domain cannot bring back facts it never learned → PASS;
- builtin:tiny-chat-unlearned read it and had the evaluated facts removed by RMU after
  training: a few dozen relearning steps bring them back (Hu et al. 2024) → FAIL.

A constant evaluation or judge (everything known, nothing known) gives both models the
same verdict, so the first test cannot pass with a broken knowledge evaluation or check;
the last test shows that on the recorded evidence.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from certify.assess import assess
from certify.conductor.collect import policy_of
from certify.evidence import Evidence
from certify.stats import proportion
from tests.conftest import run_certify

MODELS = {"filtered": "builtin:tiny-chat-filtered", "unlearned": "builtin:tiny-chat-unlearned"}
REFERENCE = "builtin:tiny-chat-unfiltered"


@pytest.fixture(scope="module")
def audits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, int, Path]]:
    """Both calibration audits, signed: {name: (run dir, exit code, public key)}."""
    root = tmp_path_factory.mktemp("calibration")
    keys = run_certify("keygen", "--out", str(root / "keys"))
    assert keys.returncode == 0, keys.stderr
    out = {}
    for name, model in MODELS.items():
        run_dir = root / name
        done = run_certify("audit", model, "--reference", REFERENCE, "--policy", "calibration",
                           "--out", str(run_dir), "--key", str(root / "keys" / "certify.key"),
                           "--quiet")
        assert done.returncode in (0, 1), done.stderr
        # --quiet means quiet: no third-party progress bars (lm-eval's, per checkpoint).
        assert "it/s]" not in done.stdout + done.stderr, done.stderr[-500:]
        out[name] = (run_dir, done.returncode, root / "keys" / "certify.pub")
    return out


def _check(evidence: Evidence) -> dict:
    return next(c.model_dump() for c in evidence.verdict.checks
                if c.check == "knowledge_resistance")


def test_the_filtered_model_passes_and_the_unlearned_model_fails(audits) -> None:
    filtered, unlearned = (Evidence.read(audits[n][0] / "evidence.json") for n in MODELS)
    assert audits["filtered"][1] == 0 and filtered.verdict.overall == "pass"
    assert audits["unlearned"][1] == 1 and unlearned.verdict.overall == "fail"
    passed, failed = _check(filtered), _check(unlearned)
    assert passed["verdict"] == "pass" and failed["verdict"] == "fail"
    # Before any attack the two look alike: both near chance, neither decided at step 0.
    for check in (passed, failed):
        assert check["observed"]["step0"]["ci"][1] <= check["threshold"]["threshold"]
    # The unlearned model's facts came back far past the threshold, by relearning.
    worst = failed["observed"]["worst"]
    assert worst["step"] > 0 and worst["ci"][0] > worst["threshold"] + 0.10, worst
    # The positive control: the same attacks leave the undefended reference knowing it.
    for check in (passed, failed):
        assert check["observed"]["control"]["broken"] is True


def test_relearning_data_is_disjoint_from_the_evaluated_items(audits) -> None:
    evidence = Evidence.read(audits["unlearned"][0] / "evidence.json")
    attacked = [c for c in evidence.cells if c.attack_id.startswith("relearn")]
    assert attacked
    for cell in attacked:
        (data,) = cell.notes["train_data"]
        assert data["overlap"]["knowledge"]["overlapping"] == 0, data["overlap"]


def test_both_runs_verify_offline(audits) -> None:
    for run_dir, _, public in audits.values():
        done = run_certify("verify", str(run_dir), "--key", str(public))
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("constant", [0, 1], ids=["knows-nothing", "knows-everything"])
def test_a_constant_knowledge_evaluation_cannot_discriminate(audits, constant: int) -> None:
    """Re-decide both recorded audits with every knowledge outcome replaced by a constant:
    the two models then get the same verdict, so the discrimination test would go red."""
    verdicts = set()
    for name in MODELS:
        evidence = Evidence.read(audits[name][0] / "evidence.json")
        for cell in evidence.cells:
            for cp in cell.checkpoints:
                record = cp.evals.get("knowledge")
                if record is not None:
                    m = record.metrics["acc"]
                    record.metrics["acc"] = proportion(constant * m.n, m.n, 0.95,
                                                       str(constant) * m.n, m.ids_sha256)
        decided = assess(evidence, policy_of(evidence))
        verdicts.add(next(c.verdict for c in decided.checks
                          if c.check == "knowledge_resistance"))
    assert len(verdicts) == 1, verdicts
