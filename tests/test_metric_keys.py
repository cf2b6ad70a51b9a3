"""Results are keyed by attack id and evaluation id: two that share a name are refused.

TamperBench #119 lost results because two evaluations wrote to one metric key. In a
certify policy each of these is a validation error (exit 2) before anything runs: two
attacks with one id, two evaluations with one key, an evaluation listed twice for one
attack (at every checkpoint and again at the last), a baseline evaluation listed twice.
"""

from __future__ import annotations

from pathlib import Path

from tests.conftest import ROOT, run_certify

BASE = (ROOT / "tests" / "policies" / "search-resume.yaml").read_text()
ATTACK = BASE[BASE.index("  - id: search"):BASE.index("evaluations:")]
EVALUATION = ("  harm:\n    eval: harmfulness\n"
              "    params: {n: 6, max_new_tokens: 16, judges: [canary]}\n")

CASES = {
    "attacks": (BASE.replace("evaluations:", ATTACK + "evaluations:"),
                "'search' is already the id of an earlier entry"),
    "evaluations": (BASE.replace("checks:", EVALUATION + "checks:"),
                    "duplicate key 'harm'"),
    "evaluate": (BASE.replace("    checkpoints: [2, 4]\n",
                              "    checkpoints: [2, 4]\n    evaluate: [harm, harm]\n"),
                 "harm listed more than once in evaluate/evaluate_final"),
    "evaluate-final": (BASE.replace("    checkpoints: [2, 4]\n",
                                    "    checkpoints: [2, 4]\n    evaluate_final: [harm]\n"),
                       "harm listed more than once in evaluate/evaluate_final"),
    "baseline": (BASE.replace("baseline: [harm]", "baseline: [harm, harm]"),
                 "baseline names an evaluation more than once"),
}


def test_attacks_or_evaluations_sharing_a_name_are_refused(tmp_path: Path) -> None:
    files = []
    for name, (text, _) in CASES.items():
        assert text != BASE, name  # the edit took
        (tmp_path / f"{name}.yaml").write_text(text)
        files.append(str(tmp_path / f"{name}.yaml"))
    out = run_certify("policy", "validate", *files)
    assert out.returncode == 2, out.stdout + out.stderr
    text = out.stdout + out.stderr
    for name, (_, reason) in CASES.items():
        assert f"FAIL  {tmp_path / name}.yaml" in text
        assert reason in text, (name, text)
    assert "ok    " not in text
