"""certify: audit a language model's resistance to harmful fine-tuning.

The public API follows the data flow ``policy → plan → run → evidence → assess →
report → attest``. Heavy dependencies (torch, transformers, peft, lm-eval,
weasyprint) are imported only inside the functions that need them, so importing
this package, validating a policy, or verifying a run directory stays light.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
