"""Fault injection for certify's reliability tests. Inert unless its variables are set.

Named points in the run call :func:`reached`. Two environment variables drive it:

``CERTIFY_TEST_FAULT=ACTION:POINT@N``
    do ACTION the Nth time this process reaches POINT (N defaults to 1):

    - ``kill``: SIGKILL this process, as a power cut or the OOM killer would;
    - ``term``: SIGTERM this process, as a cancelled CI job or a preemption would (a
      graceful stop: certify.stopping);
    - ``oom``: ask torch's CPU allocator for an impossible tensor, so the allocator's own
      out-of-memory error surfaces where training or generation would hit it;
    - ``enospc``: raise ``OSError(ENOSPC)``, as a full disk does in ``write``.

``CERTIFY_TEST_FAULT_RANK=R``
    inject only in the process of rank R of an FSDP gang (``RANK``, as torchrun sets it).

``CERTIFY_TEST_FAULT_TRACE=FILE``
    append every point reached to FILE, one name a line, so a test can choose fault
    points from a real uninterrupted run.

Points: ``cell_start`` (a cell begins), ``train_step`` (after an optimizer step),
``generate`` (before each generation batch), ``write`` (an atomic write's bytes are
in its temporary file, not yet renamed), ``samples_written`` (a cell's samples file
is in place, its result file not yet), ``search_trial`` (a search told its study a
finished trial).
"""

from __future__ import annotations

import errno
import os
import signal

FAULT_VAR = "CERTIFY_TEST_FAULT"
RANK_VAR = "CERTIFY_TEST_FAULT_RANK"
TRACE_VAR = "CERTIFY_TEST_FAULT_TRACE"
ACTIONS = ("kill", "term", "oom", "enospc")
_counts: dict[str, int] = {}


def reached(point: str) -> None:
    """Mark that the run reached ``point``; inject the configured fault if it is this one."""
    spec, trace = os.environ.get(FAULT_VAR), os.environ.get(TRACE_VAR)
    if not spec and not trace:
        return
    _counts[point] = _counts.get(point, 0) + 1
    if trace:
        with open(trace, "a", encoding="utf-8") as f:
            f.write(point + "\n")
    rank = os.environ.get(RANK_VAR)
    if rank is not None and os.environ.get("RANK") != rank:
        return
    if spec and _matches(spec, point, _counts[point]):
        _inject(spec.split(":", 1)[0])


def _matches(spec: str, point: str, count: int) -> bool:
    action, _, target = spec.partition(":")
    name, _, nth = target.partition("@")
    if action not in ACTIONS or not name:
        raise ValueError(f"{FAULT_VAR}={spec!r}: expected ACTION:POINT[@N], ACTION in {ACTIONS}")
    return name == point and count == int(nth or 1)


def _inject(action: str) -> None:
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "term":
        os.kill(os.getpid(), signal.SIGTERM)
    elif action == "oom":
        import torch

        torch.empty(1 << 62, dtype=torch.uint8)  # 4 EiB: no allocator can satisfy it
    elif action == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
