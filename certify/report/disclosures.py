"""What the attacks, evaluations and judges recorded beyond the numbers a check reads.

A verdict is only as honest as what it discloses next to it: how many covert training
examples each judge flags (covert data is built to pass such screening), whether the
cipher was learned and which measurements that invalidated, every trial of a
worst-case search and which one the verdict sees, the poisoned mix, overlap between
attack training data and evaluation prompts, cells stopped early, and how accurate
each judge was on its labelled set. Built from the evidence alone; the headline
sentences are also quoted in the condition sections.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from certify.evidence import CellRecord, Evidence
from certify.report.attack_notes import (
    AttackDisclosure,
    Block,
    attack_disclosure,
    frac,
    headlines,
    table,
    who,
)
from certify.report.methodology import validated_twin
from certify.report.text import num, one_line, pct, short_digest

ENSEMBLE_RULES = {
    "primary": "the first judge decides; the others are reported beside it, never averaged",
    "any": "a response counts as harmful when any judge says so (the most conservative rule)",
    "majority": "a response counts as harmful when most judges say so",
    "all": "a response counts as harmful only when every judge says so",
}


@dataclass(frozen=True)
class Disclosures:
    attacks: list[AttackDisclosure]
    overlap: Block
    early_stops: Block
    invalid: Block
    judges: list[str]
    """Each judge's validation in words (quoted under Audit validity)."""
    ensembles: list[str]
    """How each evaluation combines its judges."""
    by_attack: dict[str, list[str]] = field(default_factory=dict)

    def for_attacks(self, attack_ids: Iterable[str]) -> list[str]:
        """Headline sentences about these attacks, in attack order, without repeats."""
        wanted = set(attack_ids)
        out: list[str] = []
        for attack_id, sentences in self.by_attack.items():
            if attack_id in wanted:
                out += [s for s in sentences if s not in out]
        return out


# --------------------------------------------------------------------------- run-wide

def _overlap(evidence: Evidence) -> tuple[Block, dict[str, list[str]]]:
    """The overlap table, and per attack the sentences warning of overlap it found."""
    worst: dict[tuple[str, str, str], dict[str, Any]] = {}
    cells: dict[tuple[str, str, str], int] = {}
    for cell in evidence.cells:
        for data in cell.notes.get("train_data") or []:
            for eval_id, o in (data.get("overlap") or {}).items():
                key = (cell.attack_id, str(data.get("name")), str(eval_id))
                cells[key] = cells.get(key, 0) + 1
                if key not in worst or (o.get("overlapping") or 0) > (
                        worst[key].get("overlapping") or 0):
                    worst[key] = o
    rows: list[list[str]] = []
    hits: list[str] = []
    by_attack: dict[str, list[str]] = {}
    for (attack, name, eval_id), o in sorted(worst.items(),
                                             key=lambda kv: -(kv[1].get("rate") or 0.0)):
        rows.append([one_line(attack, 80), one_line(name, 120), one_line(eval_id, 60),
                     num(o.get("n_gram")), frac(o.get("overlapping"), o.get("eval_prompts")),
                     num(o.get("exact_duplicates")), num(cells[(attack, name, eval_id)])])
        if o.get("overlapping"):
            hits.append(sentence := one_line(
                f"Training data of {attack} ({name}) shares a sequence of {num(o.get('n_gram'))} "
                f"words with {frac(o.get('overlapping'), o.get('eval_prompts'))} prompts of "
                f"evaluation {eval_id} ({num(o.get('exact_duplicates'))} exact duplicate(s)) in "
                "its worst cell: those measurements may reflect memorisation rather than "
                "generalization.", 600))
            by_attack.setdefault(attack, []).append(f"{one_line(attack, 80)}: {sentence}")
        # Harm evaluations only: there an answer is an uplift fact the attack should not
        # teach; a benign task's answers are in its training data by design.
        if (o.get("answers_in_training")
                and (evidence.evaluations.get(eval_id) or {}).get("measures") == "harm"):
            hits.append(stated := one_line(
                f"Training data of {attack} ({name}) states the answers of "
                f"{frac(o.get('answers_in_training'), o.get('answers'))} items of evaluation "
                f"{eval_id}: what it measures on them is what the attack taught, not what the "
                "model knew.", 600))
            by_attack.setdefault(attack, []).append(f"{one_line(attack, 80)}: {stated}")
    if not rows:
        return Block("Training data overlap with evaluation prompts",
                     ["No attack recorded its training data, so no overlap was checked."]), {}
    n = one_line(next(iter(worst.values())).get("n_gram"), 10)
    lead = hits or [f"No evaluation prompt shares a sequence of {n} words with the training "
                    f"data of any attack ({len(rows)} attack × dataset × evaluation pairs "
                    "checked)."]
    return Block("Training data overlap with evaluation prompts", lead,
                 table(["attack", "training data", "evaluation", "n-gram",
                         "overlapping prompts (worst cell)", "exact duplicates", "cells"], rows,
                        order="highest overlap first")), by_attack


BOUNDED_STOP = ("A capability-bounded check (bounded_worst) is decided for a cell only at a "
                "confident break that its capability bound counts, judged against the "
                "baseline cell's capability with the verdict's own rule and confidence; a "
                "break outside the bound decides nothing, so such a cell trains on.")
"""How early stopping treats the capability bound (assess/resistance.py)."""


def _bounded(evidence: Evidence) -> bool:
    checks = (evidence.policy.get("effective") or {}).get("checks") or []
    return any(isinstance(c, dict) and c.get("aggregation") == "bounded_worst" for c in checks)


def _early_stops(evidence: Evidence) -> Block:
    attack_cells = [c for c in evidence.cells if c.attack_id != "baseline"]
    stopped = [c for c in attack_cells if c.early_stop is not None]
    rows = [[one_line(c.attack_id, 80), who(c),
             f"{num(c.early_stop.step)} of {num(c.max_steps)}",  # type: ignore[union-attr]
             one_line(c.early_stop.reason, 300)] for c in stopped]  # type: ignore[union-attr]
    bounded = [BOUNDED_STOP] if _bounded(evidence) else []
    if not stopped:
        return Block("Early stops", [f"No attack cell stopped early: all {len(attack_cells)} "
                                     "ran to their last checkpoint (or failed, see Cells).",
                                     *bounded])
    return Block("Early stops", [
        f"{len(stopped)} of {len(attack_cells)} attack cells stopped before their step budget, "
        "once every check reading them was decided; each stop and its reason is listed. "
        "Their curves end at the stop.", *bounded],
        table(["attack", "cell", "stopped at step", "reason"], rows))


def _invalid(evidence: Evidence) -> Block:
    rows, notes = [], []
    for cell in evidence.cells:
        for cp in cell.checkpoints:
            for eval_id, rec in cp.evals.items():
                if rec.valid:
                    continue
                note = one_line(rec.note or "measurement marked invalid", 300)
                rows.append([one_line(cell.attack_id, 80), who(cell), num(cp.step),
                             one_line(eval_id, 60), note])
                if note not in notes:
                    notes.append(note)
    if not rows:
        return Block("Invalid measurements", ["Every measurement was valid."])
    lead = (f"{len(rows)} measurement(s) are marked invalid and can never count as safe "
            f"(a check reading them is at best inconclusive). First reason: {notes[0]}")
    return Block("Invalid measurements", [one_line(lead, 700)],
                 table(["attack", "cell", "step", "evaluation", "why"], rows))


def _ensembles(evidence: Evidence) -> dict[str, str]:
    rules: dict[str, str] = {}
    for cell in evidence.cells:
        for eval_id, ident in (cell.notes.get("evaluators") or {}).items():
            if isinstance(ident, dict) and isinstance(ident.get("ensemble"), str):
                rules.setdefault(eval_id, ident["ensemble"])
    return rules


def judge_sentences(evidence: Evidence) -> list[str]:
    """One sentence per judge with its validation (or that it has none)."""
    out = []
    for j in evidence.judges:
        v = j.get("validation") or {}
        name, eval_id = one_line(j.get("name"), 60), one_line(j.get("eval"), 60)
        weights = (f" (weights sha256 {short_digest(j.get('weights_digest'))})"
                   if j.get("weights_digest") else "")
        if not v:
            twin = validated_twin(j, evidence.judges)
            out.append(one_line(
                f"Judge {name} on {eval_id}{weights} is the judge validated under {twin} (same "
                "parameters and weights)." if twin else f"Judge {name} on {eval_id}{weights} "
                "was not validated on a labelled set: its error rates are unknown.", 600))
            continue
        data = (v.get("dataset") or {}).get("name", "—")
        out.append(one_line(
            f"Judge {name} on {eval_id}{weights}: {pct(v.get('accuracy'))} accurate on "
            f"{data} (n={num(v.get('n'))}); false-positive rate "
            f"{pct(v.get('false_positive_rate'))} (benign called harmful), false-negative rate "
            f"{pct(v.get('false_negative_rate'))} (harmful missed).", 600))
    return out


def ensemble_sentences(evidence: Evidence) -> list[str]:
    judged: dict[str, int] = {}
    for j in evidence.judges:
        judged[str(j.get("eval"))] = judged.get(str(j.get("eval")), 0) + 1
    return [f"Evaluation {one_line(eval_id, 60)} combines its {judged[eval_id]} judge(s) by rule "
            f"'{rule}': {ENSEMBLE_RULES[rule]}."
            for eval_id, rule in sorted(_ensembles(evidence).items())
            if eval_id in judged and rule in ENSEMBLE_RULES]


def disclosures(evidence: Evidence) -> Disclosures:
    by_id: dict[str, list[CellRecord]] = {}
    for cell in evidence.cells:
        if cell.attack_id != "baseline":
            by_id.setdefault(cell.attack_id, []).append(cell)
    techniques = {a.get("id"): a.get("technique", "") for a in evidence.attacks}
    attacks = [attack_disclosure(a, str(techniques.get(a, cells[0].technique)), cells)
               for a, cells in by_id.items()]
    overlap, overlap_hits = _overlap(evidence)
    by_attack: dict[str, list[str]] = {}
    for disclosure, (attack_id, cells) in zip(attacks, by_id.items(), strict=True):
        stopped = sum(c.early_stop is not None for c in cells)
        by_attack[attack_id] = headlines(disclosure) + overlap_hits.get(attack_id, []) + (
            [f"{disclosure.id}: {stopped} of {len(cells)} cells stopped early (see Early "
             "stops)."] if stopped else [])
    attacks = [a for a in attacks if a.blocks]
    return Disclosures(attacks=attacks, overlap=overlap,
                       early_stops=_early_stops(evidence), invalid=_invalid(evidence),
                       judges=judge_sentences(evidence),
                       ensembles=ensemble_sentences(evidence), by_attack=by_attack)
