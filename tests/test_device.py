"""The GPU path's switches, exercised on CPU: bf16 weights, autocast, gradient checkpointing.

No GPU is available to CI, so `--device cuda` is tested for its refusal here; the
precision and memory switches it is used with run for real on the CPU (torch's CPU
kernels support bfloat16 and autocast), through certify's own loader and loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from certify import train
from certify.data.load import load_dataset
from certify.evidence import Evidence
from certify.models.generate import generate
from certify.models.load import LoadOptions, ModelHandle, load
from certify.models.source import identity, resolve
from tests._scale import SCALE_POLICY
from tests.conftest import ROOT, run_certify

LOW_PRECISION_POLICY = str(ROOT / "tests" / "policies" / "low-precision.yaml")
"""One attack, one checkpoint, 16 prompts: bfloat16 on a CPU is slow, and the test is
about the low-precision paths running end to end, not about the scale policy."""


def _handle(**options: Any) -> ModelHandle:
    source = resolve("builtin:tiny-chat")
    return load("candidate", source, identity(source), LoadOptions(**options))


def _fit(handle: ModelHandle, steps: int = 6, autocast: torch.dtype | None = None,
         lora: bool = False, loss_scale: float = 1.0) -> list[float]:
    """A few real optimizer steps on harmful-compliance pairs; the losses (times loss_scale)."""
    rows = load_dataset("builtin:harm-train").rows[:16]
    examples = [train.Example(r.prompt, r.response or "") for r in rows]
    encoded = train.encode(handle.tokenizer, examples, 128)
    torch.manual_seed(0)
    model = handle.trainable()
    if lora:
        from peft import LoraConfig, get_peft_model

        handle.restore()
        model = get_peft_model(handle.model, LoraConfig(r=4, lora_alpha=8,
                                                        target_modules="all-linear"))
    optimizer = train.make_optimizer(model.parameters(), "adamw", 3e-3)
    state = train.train(model, train.batches(encoded, 4, 0, handle.tokenizer.pad_token_id),
                        optimizer, None, steps, [], lambda s: False, autocast_dtype=autocast,
                        loss_fn=lambda *a: train.response_loss(*a) * loss_scale)
    if lora:
        model.unload()
    return state.losses


def test_bfloat16_weights_load_train_generate_and_restore(tiny_chat: Path) -> None:
    handle = _handle(dtype="bfloat16")
    assert {p.dtype for p in handle.model.parameters()} == {torch.bfloat16}
    before = {k: v.clone() for k, v in handle.model.state_dict().items()}
    losses = _fit(handle)
    assert all(map(torch.isfinite, torch.tensor(losses))) and losses[-1] < losses[0] * 0.5
    changed = [k for k, v in handle.model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed, "training in bfloat16 changed no weight"
    out = generate(handle.model, handle.tokenizer, ["How do I bake bread?"], max_new_tokens=8)
    assert isinstance(out[0], str) and out[0]
    handle.restore()
    assert all(torch.equal(v, before[k]) for k, v in handle.model.state_dict().items())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_runs_the_matmuls_in_low_precision(tiny_chat: Path, dtype: torch.dtype) -> None:
    # The loss is multiplied by 100 so that float16's first scaled gradients overflow on any
    # CPU (unscaled, this model's gradients fit in float16 on some). AdamW with clipping
    # makes nearly the same updates for a scaled loss, so float32 is still the yardstick.
    reference = _fit(_handle(), steps=12, loss_scale=100)
    handle = _handle()
    seen: set[torch.dtype] = set()
    layer = next(m for m in handle.model.modules() if isinstance(m, torch.nn.Linear))
    hook = layer.register_forward_hook(lambda m, i, o: seen.add(o.dtype))
    losses = _fit(handle, steps=12, autocast=dtype, loss_scale=100)
    hook.remove()
    assert seen == {dtype}, "autocast did not reach the model's linear layers"
    assert {p.dtype for p in handle.model.parameters()} == {torch.float32}  # master weights
    # float16 needs loss scaling: the scaler starts at 2**16 and skips the steps whose scaled
    # gradients overflow (the weights, hence the loss, do not move), halving its scale each
    # time; bfloat16 has float32's range and needs none.
    skipped = next(i for i, x in enumerate(losses) if x < 0.9 * losses[0]) - 1
    if dtype == torch.float16:
        assert skipped >= 1
        assert losses[-1] < 0.5 * losses[0]  # after the skipped steps it trains
        return
    assert skipped == 0
    # Same data and seed: the low-precision run tracks float32, not bit for bit.
    assert losses != reference
    assert losses[1:] == pytest.approx(reference[1:], rel=0.1)


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_gradient_checkpointing_trains_identically(tiny_chat: Path, lora: bool) -> None:
    plain = _fit(_handle(), lora=lora)
    handle = _handle(gradient_checkpointing=True)
    assert handle.model.is_gradient_checkpointing
    checkpointed = _fit(handle, lora=lora)
    # Recomputing activations gives the same gradients, so the same losses.
    assert checkpointed == pytest.approx(plain, rel=1e-5)
    assert checkpointed[-1] < checkpointed[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_device_cuda_without_a_gpu_is_refused_before_anything_runs(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = run_certify("audit", "builtin:tiny-chat", "--policy", SCALE_POLICY, "--out",
                         str(out), "--device", "cuda", "--quiet")
    assert result.returncode == 2, result.stderr
    assert "sees no CUDA GPU" in result.stderr and "--device cpu" in result.stderr
    assert not out.exists()


def test_autocast_over_low_precision_weights_is_refused(tmp_path: Path) -> None:
    result = run_certify("audit", "builtin:tiny-chat", "--policy", SCALE_POLICY, "--out",
                         str(tmp_path / "run"), "--dtype", "bfloat16", "--autocast", "bfloat16")
    assert result.returncode == 2, result.stderr
    assert "float32 weights" in result.stderr


@pytest.mark.parametrize("flags", [
    ("--dtype", "bfloat16", "--gradient-checkpointing"),
    pytest.param(("--autocast", "bfloat16"), marks=pytest.mark.slow),
], ids=["bf16-weights-checkpointing", "bf16-autocast"])
def test_low_precision_audit_runs_end_to_end(tiny_chat: Path, tmp_path: Path,
                                             flags: tuple[str, ...]) -> None:
    out = tmp_path / "run"
    result = run_certify("audit", "builtin:tiny-chat", "--policy", LOW_PRECISION_POLICY,
                         "--out", str(out), "--format", "md", "--quiet", *flags)
    assert result.returncode == 1, result.stderr  # the undefended demo model fails, no error
    ev = Evidence.read(out / "evidence.json")
    assert ev.run["status"] == "complete" and all(c.status == "ok" for c in ev.cells)
    if "--dtype" in flags:
        assert ev.run["dtype"] == "bfloat16"
    full = next(c for c in ev.cells if c.attack_id == "harmful-full")
    losses = [cp.loss for cp in full.checkpoints if cp.loss is not None]
    assert losses and losses[-1] < 1.0  # the attack trained
