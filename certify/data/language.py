"""Synthetic second languages for multilingual fine-tuning on English-only data. Torch-free.

Real multilingual attacks train on data in another language, loaded by name. The
demo world has no such data, so it uses a deterministic word mapping instead:
``backslang`` (the old English language game) spells every word backwards and keeps
each letter position's case ("Sure, here is" becomes "Erus, ereh si"). Digits,
spaces and punctuation pass through. The mapping is its own inverse, so a response
in the language is mapped back exactly before the judges read it. Its words are not
words of the demo tokenizer's corpus: they tokenize about 2.5 times longer than
English (measured on builtin:harm-train), about as long as the cipher attack's text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_WORD = re.compile(r"[A-Za-z]+")


def _backwards(match: re.Match[str]) -> str:
    word = match.group(0)
    flipped = word[::-1].lower()
    return "".join(c.upper() if w.isupper() else c for c, w in zip(flipped, word, strict=True))


@dataclass(frozen=True)
class BackSlang:
    """Every run of letters reversed, with the case of each position kept."""

    name: str = "backslang"

    def encode(self, text: str) -> str:
        return _WORD.sub(_backwards, text)

    def decode(self, text: str) -> str:
        return _WORD.sub(_backwards, text)  # an involution: reversing twice restores the word

    def identity(self) -> dict[str, object]:
        return {"language": self.name, "version": 1, "mapping": "per-word reversal, case kept"}


SYNTHETIC_LANGUAGES: dict[str, BackSlang] = {"backslang": BackSlang()}
"""Synthetic languages by name: applied to English data on the fly."""
