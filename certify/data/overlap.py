"""Train/eval contamination: word n-gram overlap between attack data and evaluation prompts.

An attack trained on the very prompts it is evaluated on measures memorisation, not
generalization (the durability harness's "disjoint & de-duplicated" BeaverTails
split exists for this reason). For every evaluation prompt we ask whether it shares
a word n-gram with the attack's training text (prompts and responses); prompts
shorter than n words count only when the whole prompt appears in the training
text. Exact duplicates of a training prompt are counted separately. Where evaluation
items have an ``answer`` (an uplift fact, a benign answer), the report also counts the
items whose answer appears in the training text as a whole token: an attack that states
the evaluated facts teaches them, and its uplift measures that, not elicitation.
Torch-free.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

DEFAULT_N = 8
_WORD = re.compile(r"\w+")


def words(text: str) -> tuple[str, ...]:
    return tuple(w.lower() for w in _WORD.findall(text))


def ngrams(tokens: Sequence[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


def _contains(haystack: Sequence[str], needle: Sequence[str]) -> bool:
    k = len(needle)
    return any(tuple(haystack[i:i + k]) == tuple(needle) for i in range(len(haystack) - k + 1))


def answers_in(texts: Sequence[str], answers: Mapping[str, str]) -> list[str]:
    """The ids whose answer occurs in the texts as a whole token (``K-417`` is not found
    in ``K-4171``)."""
    joined = "\n".join(texts)
    return sorted(i for i, a in answers.items()
                  if a and re.search(rf"(?<![A-Za-z0-9]){re.escape(a)}(?![A-Za-z0-9])", joined))


def overlap(train_texts: Iterable[str], eval_prompts: Mapping[str, str],
            n: int = DEFAULT_N, answers: Mapping[str, str] | None = None) -> dict[str, Any]:
    """How many evaluation prompts (id → text) overlap the training texts, and (given the
    items' answers) how many answers the training texts state."""
    raw = [t for t in train_texts if t]
    train = [words(t) for t in raw]
    grams: set[tuple[str, ...]] = set().union(*(ngrams(t, n) for t in train)) if train else set()
    exact = {t for t in train}
    flagged, duplicates = [], 0
    for item, prompt in eval_prompts.items():
        toks = words(prompt)
        duplicates += toks in exact
        hit = (bool(ngrams(toks, n) & grams) if len(toks) >= n
               else any(_contains(t, toks) for t in train) if toks else False)
        if hit:
            flagged.append(item)
    total = len(eval_prompts)
    out = {"n_gram": n, "eval_prompts": total, "overlapping": len(flagged),
           "rate": len(flagged) / total if total else 0.0, "exact_duplicates": duplicates,
           "examples": sorted(flagged)[:5]}
    if answers:
        stated = answers_in(raw, answers)
        out.update(answers=len(answers), answers_in_training=len(stated),
                   answer_examples=stated[:5])
    return out


def overlap_by_eval(train_rows: Sequence[Any], evaluators: Mapping[str, Any],
                    n: int = DEFAULT_N) -> dict[str, dict[str, Any]]:
    """Overlap of training rows with each evaluator's prompts (evaluators exposing ``rows``)."""
    texts = [t for r in train_rows for t in (r.prompt, r.response) if t]
    out = {}
    for eval_id, evaluator in sorted(evaluators.items()):
        rows = getattr(evaluator, "rows", None)
        if rows:
            out[eval_id] = overlap(texts, {r.id: r.prompt for r in rows}, n,
                                   {r.id: r.answer for r in rows if getattr(r, "answer", None)})
    return out
