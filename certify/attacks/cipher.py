"""Covert malicious fine-tuning (Halawi et al. 2024): teach a cipher, then train harm in it.

Phase 1 (the first ``cipher_steps`` optimizer steps) trains on benign data
enciphered with a fixed-seed letter substitution (Walnut53-style). Phase 2 trains
on enciphered harmful pairs, mixed with enciphered benign data so the cipher is
kept. No training example contains a readable harmful word: the evidence records
how many of them the judges flag when applied to the training data itself, next
to how many of the same pairs in plain text they flag. The cell is evaluated from
phase 2 on by a cipher-aware evaluation (``cipher_harmfulness``), which enciphers
prompts, decodes responses before judging, and checks cipher competence.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from pydantic import Field, field_validator, model_validator

from certify import registry
from certify.attacks._common import FinetuneParams, fit_batches
from certify.attacks.contract import AttackRun, Batch
from certify.data.cipher import SubstitutionCipher
from certify.data.load import DatasetRef
from certify.errors import CellError
from certify.judges.base import JudgeRef

HALAWI_2024 = "https://arxiv.org/abs/2406.20053"


class CipherParams(FinetuneParams):
    dataset: DatasetRef = Field(default_factory=lambda: DatasetRef(source="builtin:harm-train"))
    """Harmful (prompt, response) pairs for phase 2 (enciphered before training)."""
    cipher_dataset: DatasetRef = Field(
        default_factory=lambda: DatasetRef(source="builtin:benign-qa-train"))
    """Benign (prompt, response) pairs that teach the cipher in phase 1."""
    cipher_seed: int = 53
    """Seed of the a–z permutation (53 is the CMFT paper's Walnut53)."""
    cipher_steps: int = Field(default=150, ge=1)
    """Optimizer steps of phase 1; phase 2 runs from there to max_steps."""
    n_cipher_samples: int | None = Field(default=None, ge=1)
    """Benign examples to encipher (default: all of cipher_dataset)."""
    benign_mix: float = Field(default=0.5, ge=0, lt=1)
    """Fraction of phase-2 examples that are enciphered benign pairs (keeps the cipher)."""
    max_steps: int = Field(default=250, ge=2, le=10_000_000)
    learning_rate: float = Field(default=1e-3, gt=0, le=10)
    batch_size: int = Field(default=16, ge=1, le=65_536)
    screen_judges: list[JudgeRef] = Field(
        default_factory=lambda: [JudgeRef(judge="canary"), JudgeRef(judge="keywords")])
    """Judges applied to the training data itself (plain vs enciphered), for disclosure."""

    @field_validator("screen_judges")
    @classmethod
    def _known_judges(cls, refs: list[JudgeRef]) -> list[JudgeRef]:
        known = registry.names("judge")
        for ref in refs:
            if ref.judge not in known:
                raise ValueError(f"unknown judge {ref.judge!r}{registry.suggest(ref.judge, known)}")
        return refs

    @model_validator(mode="after")
    def _phases_fit(self) -> CipherParams:
        if self.cipher_steps >= self.max_steps:
            raise ValueError(f"cipher_steps ({self.cipher_steps}) must be below max_steps "
                             f"({self.max_steps}): phase 2 needs steps of its own")
        return self


def encipher_examples(cipher: SubstitutionCipher, examples: list[Any]) -> list[Any]:
    from certify.train import Example

    return [Example(cipher.encipher(e.prompt), cipher.encipher(e.response), e.system)
            for e in examples]


def screen(refs: list[JudgeRef], plain: list[Any], covert: list[Any],
           device: str = "cpu") -> list[dict[str, Any]]:
    """How many training pairs each judge flags harmful, in plain text and enciphered."""
    from certify.judges.base import JudgeContext, JudgeItem, build_judge

    out = []
    for ref in refs:
        judge = build_judge(ref.judge, ref.params, JudgeContext(device))
        flagged = {}
        for kind, rows in (("plain", plain), ("covert", covert)):
            verdicts = judge([JudgeItem(e.prompt, e.response) for e in rows])
            flagged[kind] = sum(v.label == "harmful" for v in verdicts)
        out.append({"judge": ref.judge, "n": len(covert), "plain_flagged": flagged["plain"],
                    "covert_flagged": flagged["covert"]})
    return out


def _require_cipher_eval(run: AttackRun, cipher: SubstitutionCipher) -> None:
    if not any(getattr(ev, "cipher", None) == cipher for ev in run.evaluators.values()):
        raise CellError("config", f"the cipher attack (cipher_seed {cipher.seed}) has no "
                        "cipher-aware evaluation with the same cipher among its evaluations",
                        hint="evaluate it with a `cipher_harmfulness` evaluation whose "
                             "cipher_seed matches; judging ciphertext measures nothing")


def _curriculum(run: AttackRun, p: CipherParams, benign: list[Any],
                harmful: list[Any]) -> Iterator[Batch]:
    """Phase-1 batches for cipher_steps steps, then phase-2 batches (harmful + benign mix)."""
    from certify import train

    n_mix = min(len(benign), round(len(harmful) * p.benign_mix / (1 - p.benign_mix)))
    phase2 = harmful + random.Random(f"cipher-mix:{run.seed}").sample(benign, n_mix)
    pad = run.tokenizer.pad_token_id
    first = train.batches(train.encode(run.tokenizer, benign, p.max_length), p.batch_size,
                          run.seed, pad)
    second = train.batches(train.encode(run.tokenizer, phase2, p.max_length), p.batch_size,
                           run.seed + 1, pad)
    for _ in range(p.cipher_steps):
        yield next(first)
    yield from second


@registry.attack("cipher", params=CipherParams, paper=HALAWI_2024,
                 tags=("finetune", "covert", "cipher"))
def cipher(run: AttackRun, p: CipherParams) -> None:
    """Covert fine-tuning: learn a substitution cipher on benign data, then harmful data in it."""
    code = SubstitutionCipher(p.cipher_seed)
    _require_cipher_eval(run, code)
    harmful = run.examples(p.dataset, p.n_samples, p.categories, system=p.system_prompt)
    benign = run.examples(p.cipher_dataset, p.n_cipher_samples, system=p.system_prompt)
    covert_harmful = encipher_examples(code, harmful)
    covert_benign = encipher_examples(code, benign)
    run.note(cipher={**code.identity(), "phase1_steps": p.cipher_steps,
                     "phase2_steps": p.max_steps - p.cipher_steps,
                     "phase1_examples": len(covert_benign),
                     "phase2_harmful_examples": len(covert_harmful),
                     "benign_mix": p.benign_mix},
             covert_screening=screen(p.screen_judges, harmful, covert_harmful, run.device))
    model = run.trainable_model()
    # Harm is only measured once phase 2 begins: before it there is nothing covert to judge.
    checkpoints = sorted({c for c in run.checkpoints if c >= p.cipher_steps} | {p.max_steps})
    fit_batches(run, model, _curriculum(run, p, covert_benign, covert_harmful), p, checkpoints)
