"""Check that the requested executor, device and precision can run, before any work.

A wrong ``--device`` or a missing Ray otherwise surfaces mid-run as an obscure
error inside a worker. The driver checks what it can see (its own torch, Ray being
installed); a Ray worker repeats the device check on the node it lands on, because
the driver of a GPU cluster often has no GPU itself.
"""

from __future__ import annotations

from typing import Any

from certify.errors import UsageError


def check_device_here(device: str, dtype: str, autocast: str | None) -> None:
    """Raise UsageError when this process cannot run ``device`` with these precisions."""
    if autocast and dtype != "float32":
        raise UsageError(f"--autocast {autocast} with --dtype {dtype}: autocast runs "
                         "low-precision kernels around float32 weights",
                         hint=f"use either --dtype {dtype} (weights stored in {dtype}) or "
                              f"--autocast {autocast} with the default --dtype float32")
    if device != "cuda":
        return
    import torch

    if not torch.cuda.is_available():
        raise UsageError(f"--device cuda, but torch {torch.__version__} sees no CUDA GPU here",
                         hint="run on a GPU machine with a CUDA build of torch, on a Ray "
                              "cluster with GPUs (--executor ray), or use --device cpu")
    wants_bf16 = "bfloat16" in (dtype, autocast)
    if wants_bf16 and not torch.cuda.is_bf16_supported():
        raise UsageError(f"{torch.cuda.get_device_name(0)} does not support bfloat16",
                         hint="use --dtype float16, or --autocast float16 (with loss scaling)")


def check_fsdp(processes: int, device: str, autocast: str | None) -> None:
    """Raise UsageError when ``--fsdp N`` cannot run with these options on this machine."""
    if processes == 1:
        return
    if autocast == "float16":
        raise UsageError("--fsdp with --autocast float16: loss scaling is not implemented for "
                         "sharded training", hint="use --autocast bfloat16 (no loss scaling "
                                                  "needed), or --fsdp 1")
    if device != "cuda":
        return
    import torch

    have = torch.cuda.device_count()
    if have < processes:
        raise UsageError(f"--fsdp {processes} --device cuda needs {processes} GPUs on this "
                         f"machine; torch sees {have}",
                         hint=f"use --fsdp {have}" if have > 1 else "use --fsdp 1")


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError("--executor ray needs Ray, which is not installed",
                         hint='pip install "certify[ray]", or use --executor local') from None
    return ray


def check(executor: str, fsdp: int, device: str, dtype: str, autocast: str | None) -> None:
    """Driver-side checks: Ray importable, device usable when local."""
    if executor == "ray" and fsdp > 1:
        raise UsageError("--fsdp with --executor ray is not supported: a gang of FSDP "
                         "processes runs on one machine",
                         hint="run one `certify audit --fsdp N --shard I/M` per machine and "
                              "`certify merge` the shards (docs/scale.md)")
    if executor == "ray":
        import_ray()
        if autocast and dtype != "float32":
            check_device_here("cpu", dtype, autocast)
        return
    check_device_here(device, dtype, autocast)
    check_fsdp(fsdp, device, autocast)
