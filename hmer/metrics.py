"""Expression-level metrics: ExpRate (exact match) and the share within 1 or 2 token edits.

Predictions and truths are token sequences (lists of strings, or of ids: anything hashable); the
token-level Levenshtein distance comes from the ``editdistance`` package.

Three ExpRates are reported side by side (``hmer evaluate``), and every figure says which:

- **ExpRate** (``exprate``): exact match against hmer's normalization of the truth
  (:func:`hmer.data.latex.normalize_latex`);
- **published ExpRate** (``exprate_published``): exact match against the captions of the
  BTTR/CoMER data as published, when the test set comes in that layout: the protocol of the
  papers, the number to compare with them;
- **equivalence ExpRate** (:func:`equivalence_exprate`): two sequences match when they render the
  same formula (:func:`hmer.data.latex.equivalence_form`).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import NamedTuple

import editdistance

from hmer.data.latex import equivalence_form

__all__ = [
    "ExpressionRow",
    "edit_distance",
    "equivalence_exprate",
    "exprate",
    "expression_table",
    "low_score_threshold",
    "score_bins",
]


def equivalence_exprate(
    predictions: Sequence[Sequence[str]], truths: Sequence[Sequence[str]]
) -> float:
    """Percent of predictions that render the same formula as their truth (0.0 when none):
    equal after :func:`hmer.data.latex.equivalence_form`, e.g. ``\\frac 1 2`` and
    ``\\frac { 1 } { 2 }``, ``. . .`` and ``\\ldots``."""
    _check_lengths(predictions, truths)
    if not truths:
        return 0.0
    same = sum(
        equivalence_form(p) == equivalence_form(t) for p, t in zip(predictions, truths, strict=True)
    )
    return 100.0 * same / len(truths)


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
    """One expression for error analysis: tokens space-joined, ``distance`` in token edits,
    ``score`` the search's length-normalized log-probability (None when not known)."""

    name: str
    truth: str
    prediction: str
    distance: int
    score: float | None = None


def expression_table(
    names: Sequence[str],
    truths: Sequence[Sequence[str]],
    predictions: Sequence[Sequence[str]],
    scores: Sequence[float] | None = None,
) -> list[ExpressionRow]:
    """One row per expression, in the given order (sort by ``distance`` to see the worst)."""
    _check_lengths(predictions, truths)
    if len(names) != len(truths):
        raise ValueError(f"{len(names)} names for {len(truths)} truths")
    if scores is not None and len(scores) != len(truths):
        raise ValueError(f"{len(scores)} scores for {len(truths)} truths")
    per_row = scores if scores is not None else [None] * len(truths)
    return [
        ExpressionRow(name, " ".join(t), " ".join(p), edit_distance(p, t), score)
        for name, t, p, score in zip(names, truths, predictions, per_row, strict=True)
    ]


def score_bins(
    scores: Sequence[float], correct: Sequence[bool], bins: int = 5
) -> list[dict[str, float | int]]:
    """How often a reading is right as a function of its score: ``scores`` sorted and cut into
    ``bins`` groups of (nearly) equal count, lowest first.

    Returns one dict per non-empty group: ``low`` / ``high`` (its score range), ``count`` and
    ``exprate`` (percent of its readings that were right).
    """
    _check_lengths(scores, correct)
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    groups = []
    for b in range(bins):
        members = order[b * len(order) // bins : (b + 1) * len(order) // bins]
        if members:
            groups.append(
                {
                    "low": float(scores[members[0]]),
                    "high": float(scores[members[-1]]),
                    "count": len(members),
                    "exprate": 100.0 * sum(bool(correct[i]) for i in members) / len(members),
                }
            )
    return groups


def low_score_threshold(
    scores: Sequence[float], correct: Sequence[bool], max_exprate: float = 5.0
) -> tuple[float, float, int] | None:
    """The highest score ``t`` such that readings scoring below ``t`` were right at most
    ``max_exprate`` percent of the time: what "a low score" means for a model, measured on a
    test split.

    Returns ``(t, exprate below t, count below t)``, or None when not even the lowest-scoring
    reading is below the rate (no score is low).
    """
    _check_lengths(scores, correct)
    pairs = sorted(zip(scores, correct, strict=True), key=lambda pair: pair[0])
    found, right = None, 0
    for count, (score, is_right) in enumerate(pairs, start=1):
        right += bool(is_right)
        # Cut only between distinct scores, so that "below t" is exactly these readings.
        after = pairs[count][0] if count < len(pairs) else None
        if after is not None and after == score:
            continue
        rate = 100.0 * right / count
        if rate <= max_exprate:
            threshold = after if after is not None else math.nextafter(score, math.inf)
            found = (float(threshold), rate, count)
    return found
