"""Expression-level metrics: ExpRate (exact match) and the share within 1 or 2 token edits.

Predictions and truths are token sequences (lists of strings, or of ids: anything hashable); the
token-level Levenshtein distance comes from the ``editdistance`` package.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import NamedTuple

import editdistance

__all__ = ["ExpressionRow", "edit_distance", "exprate", "expression_table"]


def edit_distance(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """Token-level Levenshtein distance (insertions, deletions, substitutions)."""
    return int(editdistance.eval(list(a), list(b)))


def _check_lengths(predictions: Sequence, truths: Sequence) -> None:
    if len(predictions) != len(truths):
        raise ValueError(f"{len(predictions)} predictions for {len(truths)} truths")


def exprate(
    predictions: Sequence[Sequence[Hashable]], truths: Sequence[Sequence[Hashable]]
) -> dict[str, float | int]:
    """ExpRate and its relaxed variants over paired token sequences.

    Returns:
        ``exprate``, ``le1``, ``le2``: percent of expressions at token edit distance 0, <= 1,
        <= 2 from their truth (0.0 when there are none); ``count``: number of expressions.
    """
    _check_lengths(predictions, truths)
    distances = [edit_distance(p, t) for p, t in zip(predictions, truths, strict=True)]
    count = len(distances)

    def percent(limit: int) -> float:
        return 100.0 * sum(d <= limit for d in distances) / count if count else 0.0

    return {"exprate": percent(0), "le1": percent(1), "le2": percent(2), "count": count}


class ExpressionRow(NamedTuple):
    """One expression for error analysis: tokens space-joined, ``distance`` in token edits."""

    name: str
    truth: str
    prediction: str
    distance: int


def expression_table(
    names: Sequence[str],
    truths: Sequence[Sequence[str]],
    predictions: Sequence[Sequence[str]],
) -> list[ExpressionRow]:
    """One row per expression, in the given order (sort by ``distance`` to see the worst)."""
    _check_lengths(predictions, truths)
    if len(names) != len(truths):
        raise ValueError(f"{len(names)} names for {len(truths)} truths")
    return [
        ExpressionRow(name, " ".join(t), " ".join(p), edit_distance(p, t))
        for name, t, p in zip(names, truths, predictions, strict=True)
    ]
