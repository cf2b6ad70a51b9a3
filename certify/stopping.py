"""A graceful stop: SIGINT and SIGTERM end an audit at its next safe point.

CI runners cancel jobs with SIGTERM, and so do Kubernetes and SLURM when they preempt a
machine; people press Ctrl-C. Either signal, the first time, only sets a flag and says so
on stderr: the audit carries on to its next *safe point* (before a cell, after an
optimizer step, before a generation batch, after the last cell), where
:func:`check` raises :class:`StopRequested`. Nothing is half-written at those
points, so the executor records an ``interrupted`` event and the command exits 130;
the same command resumes the run directory. A second signal stops at once (it raises
``KeyboardInterrupt`` wherever the main thread is); every write is atomic, so that too
leaves nothing partial visible.

Raising only at safe points also means a signal can never be lost: an exception raised
from a signal handler while Python runs a ``__del__`` or a library's ``except
BaseException`` is swallowed there, and the audit would run on to the end.

The handlers are installed over whatever the process inherited. A shell without job
control starts ``cmd &`` with SIGINT *ignored*, and Python then never raises
``KeyboardInterrupt``; certify's own handler makes ``kill -INT`` stop such an audit too.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_received: list[str] = []
"""The names of the signals received while the handlers were installed, in order."""


class StopRequested(KeyboardInterrupt):
    """Raised at a safe point after SIGINT or SIGTERM. A ``KeyboardInterrupt``, so every
    ``except Exception`` lets it through and the code that handles Ctrl-C handles it."""


def requested() -> str | None:
    """The name of the first stop signal received (``"SIGTERM"``), or None."""
    return _received[0] if _received else None


def immediate() -> bool:
    """True when a second signal asked to stop at once."""
    return len(_received) > 1


def check() -> None:
    """A safe point: raise :class:`StopRequested` when a stop was asked for."""
    if _received:
        raise StopRequested(_received[0])


def _handle(signum: int, frame: FrameType | None) -> None:
    _received.append(signal.Signals(signum).name)
    if len(_received) > 1:
        raise KeyboardInterrupt  # the second signal: stop now, wherever we are
    # os.write, not print: the main thread may be inside a print to stderr right now.
    os.write(2, f"\ncertify: {_received[0]} received; stopping at the next safe point "
                "(send it again to stop at once)\n".encode())


@contextmanager
def on_signals() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM ask for a graceful stop (main thread only;
    elsewhere, as in a test's worker thread, the block runs with the signals as they were)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _received.clear()
    previous: dict[int, Any] = {s: signal.signal(s, _handle) for s in SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():  # None: a handler installed outside Python
            signal.signal(s, signal.SIG_DFL if handler is None else handler)
        _received.clear()
