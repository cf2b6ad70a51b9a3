"""Text for the report: numbers formatted once, hostile strings made inert and short.

Model outputs and dataset prompts are untrusted. Before they reach a template they
are truncated (characters and lines) and every control or format character
(escape sequences, NUL, bidi overrides, zero-width joiners) is shown as a visible
``\\xNN`` escape. HTML escaping is the template engine's job (autoescape).
"""

from __future__ import annotations

import math
import unicodedata
from typing import Any

from certify.stats import pct

__all__ = ["clean", "interval", "num", "one_line", "pct", "scalar", "short_digest",
           "signed_interval", "visible"]

HIDDEN_CATEGORIES = ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")
SAMPLE_CHARS = 480
SAMPLE_LINES = 10
FIELD_CHARS = 300


def visible(ch: str) -> str:
    if ch in "\n\t" or unicodedata.category(ch) not in HIDDEN_CATEGORIES:
        return ch
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clean(text: Any, limit: int = FIELD_CHARS, max_lines: int = SAMPLE_LINES) -> str:
    """``text`` as a short, printable string; says how much was cut."""
    raw = "" if text is None else str(text)
    cut = raw[:limit]
    lines = cut.split("\n")
    if len(lines) > max_lines:
        cut = "\n".join(lines[:max_lines])
    shown = "".join(visible(ch) for ch in cut)
    if len(cut) < len(raw):
        shown += f" … [truncated: {len(raw)} characters in all]"
    return shown


def one_line(text: Any, limit: int = FIELD_CHARS) -> str:
    return clean(text, limit, max_lines=1).replace("\t", " ")


def interval(ci: Any, as_pct: bool = True) -> str:
    if not isinstance(ci, list | tuple) or len(ci) != 2:
        return ""
    lo, hi = ci
    if as_pct:
        return f"[{pct(lo)}, {pct(hi)}]"
    return f"[{num(lo)}, {num(hi)}]"


def num(x: Any, digits: int = 3) -> str:
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}".replace(",", " ")
    if isinstance(x, float):
        if not math.isfinite(x):
            return "∞" if x > 0 else "—"
        if x != 0 and (abs(x) >= 1e6 or abs(x) < 1e-3):
            return f"{x:.3g}"
        return f"{x:.{digits}f}".rstrip("0").rstrip(".")
    return one_line(x)


def scalar(key: str, value: Any, *, rates: bool = True) -> str:
    """A table cell for a row field, chosen by the field's name. ``rates``: the row's
    interval is a proportion's (shown in %), not a difference's."""
    if value is None:
        return "—"
    if (key in ("rate", "value", "accuracy", "candidate", "reference") or key.endswith("_rate")) \
            and isinstance(value, int | float) and not isinstance(value, bool):
        return pct(value)
    if key == "difference" and isinstance(value, int | float):
        return f"{value:+.3f}"
    if key == "ratio" and isinstance(value, int | float):
        return f"{value:.2f}×" if math.isfinite(value) else "∞"
    if key == "ci":
        return interval(value, as_pct=rates) if rates else signed_interval(value)
    if isinstance(value, list):
        return one_line(", ".join(num(v) if not isinstance(v, str) else v for v in value))
    if isinstance(value, dict):
        return one_line(", ".join(f"{k}={num(v)}" for k, v in value.items()))
    return num(value)


def signed_interval(ci: Any) -> str:
    if not isinstance(ci, list | tuple) or len(ci) != 2 or not all(
            isinstance(v, int | float) for v in ci):
        return ""
    return f"[{ci[0]:+.3f}, {ci[1]:+.3f}]"


def short_digest(digest: str | None, n: int = 16) -> str:
    return f"{digest[:n]}…" if digest else "—"
