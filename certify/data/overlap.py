"""Train/eval contamination: word n-gram overlap between attack data and evaluation prompts.

An attack trained on the very prompts it is evaluated on measures memorisation, not
generalization (the durability harness's "disjoint & de-duplicated" BeaverTails
split exists for this reason). For every evaluation prompt we ask whether it shares
a word n-gram with the attack's training text (prompts and responses); prompts
shorter than n words count only when the whole prompt appears in the training
text. Exact duplicates of a training prompt are counted separately. Torch-free.
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


def overlap(train_texts: Iterable[str], eval_prompts: Mapping[str, str],
            n: int = DEFAULT_N) -> dict[str, Any]:
    """How many evaluation prompts (id → text) overlap the training texts."""
    train = [words(t) for t in train_texts if t]
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
    return {"n_gram": n, "eval_prompts": total, "overlapping": len(flagged),
            "rate": len(flagged) / total if total else 0.0, "exact_duplicates": duplicates,
            "examples": sorted(flagged)[:5]}


def overlap_by_eval(train_rows: Sequence[Any], evaluators: Mapping[str, Any],
                    n: int = DEFAULT_N) -> dict[str, dict[str, Any]]:
    """Overlap of training rows with each evaluator's prompts (evaluators exposing ``rows``)."""
    texts = [t for r in train_rows for t in (r.prompt, r.response) if t]
    out = {}
    for eval_id, evaluator in sorted(evaluators.items()):
        rows = getattr(evaluator, "rows", None)
        if rows:
            out[eval_id] = overlap(texts, {r.id: r.prompt for r in rows}, n)
    return out
