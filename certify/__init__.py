"""certify: audit a language model's resistance to harmful fine-tuning.

The public API follows the data flow ``policy → plan → run → evidence → assess →
report → attest``. Heavy dependencies (torch, transformers, peft, lm-eval,
weasyprint) are imported only inside the functions that need them, so importing
this package, validating a policy, or verifying a run directory stays light.

For notebooks and pipelines: ``certify.audit(model, policy, ...)`` returns an
``AuditResult`` and ``certify.verify(run_dir, key)`` a ``Verification`` (both defined
in ``certify.api``, which is loaded on first use, so ``import certify`` stays light).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

__all__ = ["AuditResult", "CheckOutcome", "Step", "Verification", "__version__", "audit",
           "verify"]

_API = frozenset(__all__) - {"__version__"}


def __getattr__(name: str) -> Any:
    # Loaded by name, not imported at the top: every module imports __version__ from
    # here, and certify.api sits above all of them (it calls the conductor).
    if name in _API:
        return getattr(importlib.import_module("certify.api"), name)
    raise AttributeError(f"module 'certify' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
