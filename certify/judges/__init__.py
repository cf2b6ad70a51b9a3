"""Judges turn (prompt, response) into refusal | harmful | benign | incoherent | unscored."""

from certify.judges.base import LABELS, Judge, JudgeItem, Judgement, build_judge

__all__ = ["LABELS", "Judge", "JudgeItem", "Judgement", "build_judge"]
