"""What this machine can do: memory, and a quick measured matrix-multiply throughput.

The throughput is measured at the model's own layer widths (a matmul of the shape a
training step or a decoding step runs), because small models run far below a
machine's peak. On a CPU it is measured with NumPy (float32), which uses the same
kind of BLAS kernels as PyTorch and imports in a fraction of the time; on CUDA with
PyTorch in the run's dtype. A measurement takes well under a second.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from certify.environment import cpu_name

# Datasheet dense bf16 throughput of one H100 SXM GPU; used only to translate a budget
# into "GPU-hours" for comparison, never to estimate this machine.
REFERENCE_GPU = "H100-class GPU"
REFERENCE_GPU_FLOPS = 989e12
UTILISATION = {"cpu": {"full": 0.8, "lora": 0.95, "forward": 1.0, "decode": 0.3},
               "cuda": {"full": 0.4, "lora": 0.4, "forward": 0.4, "decode": 0.2}}
"""Share of the measured matmul rate that the matrix products of a whole step achieve.

CPU: fitted (with TOKEN_LAYER_SECONDS) to steps timed on a 2-core AMD EPYC at one torch
thread, 2026-12-07, for builtin:tiny-chat (1M parameters, 4 layers) and a model of
SmolLM2-135M's shape (30 layers, width 576): full fine-tuning 0.14 s and 9.5 s per step
of 10 x 60 tokens, LoRA (rank 8, all linear layers) 0.16 s and 5.9 s, greedy decoding
15 ms and 0.74 s per step of a 64-row batch, a 64 x 20-token prefill 77 ms and 4.5 s.
Decoding is well below the matmul rate (each step re-reads the weights for one token per
row); the prefill matches it. benchmarks/bench_cost_preview.py checks the fit against
real audits. CUDA: assumed (GPU training typically reaches 30-50% model-FLOP
utilisation; batched decoding is memory-bound); not yet measured."""
TOKEN_LAYER_SECONDS = {"cpu": {"full": 40e-6, "lora": 70e-6, "forward": 10e-6, "decode": 40e-6},
                       "cuda": {"full": 0.0, "lora": 0.0, "forward": 0.0, "decode": 0.0}}
"""Seconds per token and layer outside the matrix products (norms, activations, attention
softmax, rotary embeddings, LoRA's extra small products, Python dispatch), which dominate
for small models. CPU: fitted to the same measurements as UTILISATION (two shapes, two
unknowns per kind of work; decoding counts each row of each step as one token). LoRA
training was raised from the fitted 55 to 70 us to match the ci-smoke LoRA cell (LoRA
dropout and the padding mask, which the fixed-length timing lacked)."""
LORA_EVAL_FACTOR = 2.5
"""Evaluations inside a LoRA cell run through the adapted model: every linear layer adds
two small products, a dropout and an add, so the per-token-layer cost of reading and
decoding is this many times the plain model's (fitted to the ci-smoke LoRA cell on
builtin:tiny-chat, whose four harm evaluations took 1.9x the plain-model estimate)."""
TRAIN_SETUP_SECONDS_PER_PARAMETER = {"cpu": 1.4e-7, "cuda": 0.0}
"""The first optimizer steps of a full fine-tuning cell take longer than the rest (the
gradients and optimizer states are allocated then): at SmolLM2-135M's shape the first
two steps took 19.5 s more than two steady steps (bench_cost_preview.py, 2026-12-07);
per trained parameter. Negligible for the demo's 1M-parameter models."""
EVAL_FIXED_SECONDS = {"lm_eval": 0.5, "generate": 0.0}
"""Seconds per evaluation outside the model: lm-eval renders its templates and builds its
requests on every call. It was 2.5 s while each call also loaded the tasks and collected
the environment; since lm-eval evaluations load their tasks once per evaluator a whole
call on builtin:tiny-chat takes 0.6-0.9 s (benchmarks/RESULTS.md, knowledge evaluation),
almost all of it this overhead."""
STEP_OVERHEAD = {"cpu": {"train": 0.0, "decode": 0.0},
                 "cuda": {"train": 0.010, "decode": 0.003}}
"""Fixed seconds per optimizer step and per decoding step (kernel launches). On a CPU this
is inside TOKEN_LAYER_SECONDS; on a GPU it overlaps with compute, so the larger counts."""
EXPECTED_ERROR = (0.7, 1.4)
"""Measured / estimated seconds per cell of a preview calibrated on the model
(certify.cost.calibrate), seen by benchmarks/bench_cost_preview.py on the calibration
machine with its 2 cores shared (benchmarks/RESULTS.md, 2026-12-07: the demo audit
0.85-1.37 over 10 cells, a SmolLM2-135M-shaped model 1.04-1.05, the real
SmolLM2-135M-Instruct 0.77-1.00 over 4 cells while the load held), stated with every
calibrated preview."""
UNCALIBRATED_ERROR = (0.3, 1.4)
"""The same for the fitted constants alone: the demo 0.28-0.73 (its cells are seconds
long, where the constants are least accurate) and 0.62-1.36 in earlier runs."""
REFERENCE_UTILISATION = 0.4

MAX_M, MAX_K = 2048, 4096
MAX_MATMUL_FLOP = 1e10
"""Caps one timed matmul (~0.2-0.5 s on a laptop CPU) so the probe stays quick."""
LOOP_FLOP = 2e8
"""Small matmuls are timed in loops of about this much work, so timer noise does not count."""


@dataclass(frozen=True)
class Hardware:
    device: str
    """cpu or cuda: where training would run."""
    name: str
    cores: int
    memory_total: int
    memory_available: int
    """Bytes on the training device (RAM for cpu, GPU memory for cuda)."""
    host_total: int
    host_available: int
    train_flops: float
    """Measured FLOP/s of a matmul shaped like one layer of a training step."""
    decode_flops: float
    """Measured FLOP/s of a matmul shaped like one layer of a batched decoding step."""
    measured: str
    problems: list[str] = field(default_factory=list)
    calibration: dict[str, float] = field(default_factory=dict)
    """Measured / modelled seconds per kind of work (full, lora, forward, decode), from
    timing the model itself on this machine (certify.cost.calibrate); 1 where unmeasured."""
    load: float = 1.0
    """The machine's load while it was calibrated (wall-clock per CPU second of the
    preview's process), which the calibration factors include."""

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def factor(self, kind: str) -> float:
        return self.calibration.get(kind, 1.0)


def token_seconds(machine: Hardware, kind: str, n_active: int, layers: int,
                  lora_eval: bool = False, calibrated: bool = True) -> float:
    """Seconds per token of one kind of work on ``machine``: ``full`` or ``lora`` (a token
    trained), ``forward`` (a token read in parallel: prompts, lm-eval requests) or
    ``decode`` (one row of one decoding step).

    The fitted model -- the token's matrix products at the probed matmul rate times a
    utilisation, plus a per-token, per-layer cost for the rest -- times the calibration
    factor this model's own timing gave (``calibrated``), which absorbs what the fit gets
    wrong at this shape, on this machine, at this load. Every row of the preview (any
    attack, any evaluation) goes through here, so a new attack's rows are calibrated too.
    """
    util = UTILISATION[machine.device][kind]
    per_token = TOKEN_LAYER_SECONDS[machine.device][kind]
    if lora_eval and kind in ("forward", "decode"):
        per_token *= LORA_EVAL_FACTOR
    flop = {"full": 6.0, "lora": 4.0}.get(kind, 2.0) * n_active
    rate = machine.decode_flops if kind == "decode" else machine.train_flops
    seconds = flop / (rate * util) + layers * per_token
    return seconds * (machine.factor(kind) if calibrated else 1.0)


def host_memory() -> tuple[int, int]:
    """(total, available) bytes of RAM."""
    try:
        import psutil

        vm = psutil.virtual_memory()
        return int(vm.total), int(vm.available)
    except ImportError:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        return pages, pages


def _rate(matmul: Any, m: int, k: int, n: int, sync: Any = None) -> float:
    """FLOP/s of ``matmul()`` (an m x k by k x n product): median of 5 timed loops.

    The median, not the best: on a machine shared with other work the best loop is a
    lucky burst (two previews minutes apart differed 1.6x with best-of-3), while an
    audit runs for minutes at the sustained rate."""
    work = 2.0 * m * k * n
    loop = max(1, int(LOOP_FLOP / work))
    matmul()  # warm-up: thread pools, kernel selection
    if sync:
        sync()
    times = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(loop):
            matmul()
        if sync:
            sync()
        times.append((time.perf_counter() - start) / loop)
    return work / max(sorted(times)[2], 1e-12)


def _numpy_rate(m: int, k: int, n: int) -> float:
    """The faster of one BLAS thread and all of them.

    On a machine other processes are using, multi-threaded BLAS stalls on small
    matrices while one thread runs at full speed; PyTorch picks threads per size too.
    """
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.random((m, k), dtype=np.float32)
    b = rng.random((k, n), dtype=np.float32)
    rate = _rate(lambda: a @ b, m, k, n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return rate
    with threadpool_limits(limits=1, user_api="blas"):
        return max(rate, _rate(lambda: a @ b, m, k, n))


def _torch_rate(m: int, k: int, n: int, dtype: str) -> float:
    import torch

    dt = getattr(torch, dtype)
    a = torch.rand((m, k), device="cuda", dtype=dt)
    b = torch.rand((k, n), device="cuda", dtype=dt)
    return _rate(lambda: a @ b, m, k, n, torch.cuda.synchronize)


def _dims(m: int, k: int, n: int) -> tuple[int, int, int]:
    k, n = max(1, min(k, MAX_K)), max(1, min(n, MAX_K))
    m = max(1, min(m, MAX_M, int(MAX_MATMUL_FLOP / (2 * k * n))))
    return m, k, n


def probe(device: str, dtype: str, hidden: int, ffn: int, train_tokens: int,
          decode_batch: int) -> Hardware:
    """Measure this machine for a model of width ``hidden`` (MLP width ``ffn``)."""
    host_total, host_avail = host_memory()
    train_shape = _dims(train_tokens, hidden, ffn)
    decode_shape = _dims(decode_batch, hidden, ffn)
    problems: list[str] = []
    if device == "cuda":
        try:
            import torch

            if not torch.cuda.is_available():
                raise RuntimeError("torch sees no CUDA device")
            free, total = torch.cuda.mem_get_info()
            name = torch.cuda.get_device_name(0)
            rates = [_torch_rate(*s, dtype if dtype != "float32" else "float32")
                     for s in (train_shape, decode_shape)]
            return Hardware("cuda", name, os.cpu_count() or 1, int(total), int(free), host_total,
                            host_avail, rates[0], rates[1],
                            f"torch {dtype} matmul on {name}, shapes {train_shape} and "
                            f"{decode_shape}")
        except Exception as e:  # no torch build with CUDA, no driver, no device
            problems.append(f"--device cuda was asked for, but no CUDA GPU is usable here "
                            f"({type(e).__name__}: {e}); the estimate below is for this CPU")
    rates = [_numpy_rate(*s) for s in (train_shape, decode_shape)]
    return Hardware("cpu", cpu_name(), os.cpu_count() or 1, host_total, host_avail, host_total,
                    host_avail, rates[0], rates[1],
                    f"NumPy float32 matmul on {os.cpu_count()} CPU core(s), shapes {train_shape} "
                    f"and {decode_shape}", problems)
