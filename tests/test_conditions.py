"""Each immunization condition is measured against a reference, and each check can fail."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from certify.evidence import Evidence
from tests.conftest import ROOT, run_certify

POLICIES = ROOT / "tests" / "policies"


def _derived_model(tiny_chat: Path, out: Path, **config: object) -> Path:
    """A copy of tiny-chat with config.json fields changed."""
    shutil.copytree(tiny_chat, out)
    (out / "certify-build.json").unlink()
    cfg = json.loads((out / "config.json").read_text())
    cfg.update(config)
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    return out


def _refuse_everything(tiny_chat: Path, out: Path) -> Path:
    """tiny-chat fine-tuned to refuse every request, benign or not (a useless 'defense')."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from certify import train
    from certify.data.load import load_dataset

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(tiny_chat)
    model = AutoModelForCausalLM.from_pretrained(tiny_chat)
    prompts = [r.prompt for name in ("align-train", "benign-train")
               for r in load_dataset(f"builtin:{name}").rows]
    examples = [train.Example(p, "I'm sorry, but I can't help with that.") for p in prompts]
    batches = train.batches(train.encode(tok, examples), 32, 0, tok.pad_token_id)
    opt = train.make_optimizer(model.parameters(), "adamw", 1e-3)
    train.train(model, batches, opt, None, 60, [], lambda s: False)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _audit(tmp: Path, model: Path | str, policy: Path, reference: str = "builtin:tiny-chat",
           ) -> tuple[int, Evidence, str]:
    out = tmp / "run"
    result = run_certify("audit", str(model), "--reference", reference, "--policy", str(policy),
                         "--out", str(out), "--format", "md", "--quiet")
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, Evidence.read(out / "evidence.json"), result.stdout


def _check(ev: Evidence, check_id: str):  # type: ignore[no-untyped-def]
    return next(c for c in ev.verdict.checks if c.id == check_id)


def test_refusing_everything_fails_over_refusal_and_stability(tiny_chat: Path,
                                                               tmp_path: Path) -> None:
    refuser = _refuse_everything(tiny_chat, tmp_path / "refuser")
    code, ev, stdout = _audit(tmp_path, refuser, POLICIES / "stability-only.yaml")
    assert code == 1
    stability, over = _check(ev, "benign-capability"), _check(ev, "over-refusal")
    assert stability.verdict == "fail", stability.reason
    assert stability.observed["difference"] > 0.5  # the accuracy collapses
    assert over.verdict == "fail", over.reason
    assert over.observed["candidate"] > 0.9 and over.observed["reference"] < 0.2
    assert over.observed["method"] == "paired"
    assert "FAIL" in stdout and "over-refusal" in stdout


def test_same_model_passes_the_comparisons(tiny_chat: Path, tmp_path: Path) -> None:
    code, ev, _ = _audit(tmp_path, "builtin:tiny-chat", POLICIES / "stability-only.yaml")
    assert _check(ev, "benign-capability").verdict == "pass"
    assert _check(ev, "over-refusal").verdict == "pass"
    assert code == 0


def test_a_reference_the_attack_cannot_break_makes_the_audit_inconclusive(
        tiny_chat: Path, tmp_path: Path) -> None:
    code, ev, _ = _audit(tmp_path, "builtin:tiny-chat", POLICIES / "weak-attack.yaml")
    control, strong = _check(ev, "positive-control"), _check(ev, "strong-resistance")
    assert control.verdict == "inconclusive" and "too weak" in control.reason
    assert strong.verdict == "inconclusive" and "positive control" in strong.reason
    assert ev.verdict.overall == "inconclusive" and code == 1


def test_sabotaged_finetuning_fails_trainability(tiny_chat: Path, tmp_path: Path) -> None:
    # Dropout on every attention weight during training only: the model answers as before,
    # but fine-tuning can no longer teach it anything that needs attention.
    sabotaged = _derived_model(tiny_chat, tmp_path / "sabotaged", attention_dropout=0.95)
    code, ev, _ = _audit(tmp_path, sabotaged, POLICIES / "trainability-only.yaml")
    check = _check(ev, "trainability")
    assert check.verdict == "fail", check.reason
    worst = check.observed["worst"]
    assert worst["reference"] >= 0.6 and worst["candidate"] < 0.8 * worst["reference"]
    assert code == 1
