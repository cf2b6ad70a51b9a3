"""Letter-substitution ciphers for covert fine-tuning (Halawi et al. 2024). Torch-free.

The Walnut cipher of the CMFT paper is a fixed-seed permutation of a–z: with seed
53, ``numpy.random.default_rng(53).permutation(26)`` (as in the public CiFR
implementation). Case is preserved and every other character (digits, spaces,
punctuation) passes through, so the enciphered text keeps the shape of the plain
text while no English word survives. Unlike CiFR's Walnut53 the letters are not
joined by ``|``: that doubles the sequence length, which small models cannot afford.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from functools import cached_property

LOWER = string.ascii_lowercase


@dataclass(frozen=True)
class SubstitutionCipher:
    """A permutation of a–z drawn with a fixed seed."""

    seed: int = 53

    @cached_property
    def key(self) -> str:
        """The 26 cipher letters for a..z (plain 'a' becomes key[0])."""
        import numpy as np

        perm = np.random.default_rng(self.seed).permutation(26)
        return "".join(LOWER[int(i)] for i in perm)

    @cached_property
    def _forward(self) -> dict[int, int]:
        return str.maketrans(LOWER + LOWER.upper(), self.key + self.key.upper())

    @cached_property
    def _backward(self) -> dict[int, int]:
        return str.maketrans(self.key + self.key.upper(), LOWER + LOWER.upper())

    def encipher(self, text: str) -> str:
        return text.translate(self._forward)

    def decipher(self, text: str) -> str:
        return text.translate(self._backward)

    def identity(self) -> dict[str, object]:
        """What the evidence records: enough to re-create and compare the cipher."""
        return {"cipher": "substitution", "seed": self.seed, "key": self.key}
