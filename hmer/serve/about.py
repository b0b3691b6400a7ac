"""What the page tells people about the loaded model, from its card (:mod:`hmer.card`)."""

from __future__ import annotations

from typing import Any

__all__ = ["describe_model"]

#: Words in a card's name that mark a small demonstration model (the shipped "hmer CPU starter
#: model", a ``make demo`` run).
_STARTER_WORDS = ("starter", "demo")


def _exact_rate(card: dict[str, Any]) -> tuple[float, str] | None:
    """The card's beam-search ExpRate on one CROHME test split and that split's name: the
    split its low-score threshold was measured on when it has one, else the first listed."""
    scores = card.get("scores")
    beam = scores.get("beam") if isinstance(scores, dict) else None
    if not isinstance(beam, dict) or not beam:
        return None
    threshold = card.get("low_score")
    split = threshold.get("split") if isinstance(threshold, dict) else None
    split = split if split in beam else next(iter(beam))
    entry = beam[split]
    rate = entry.get("exprate") if isinstance(entry, dict) else None
    return (float(rate), str(split)) if isinstance(rate, (int, float)) else None


def describe_model(card: dict[str, Any] | None) -> tuple[str | None, bool, str | None]:
    """``(name, starter, notice)`` for a model card (None: the model has none).

    ``starter``: the card's name says it is a starter or demo model. ``notice``: one sentence
    for the page: how often a starter model reads a formula exactly, or that a model without a
    card has unknown accuracy; None for other models with a card.
    """
    if card is None:
        return None, False, "This model has no card: how often it reads a formula right is unknown."
    name = card.get("name")
    name = str(name) if name is not None else None
    starter = name is not None and any(word in name.lower() for word in _STARTER_WORDS)
    if not starter:
        return name, False, None
    rate = _exact_rate(card)
    measured = (
        f": it read {rate[0]:.0f}% of the CROHME {rate[1]} test formulas exactly" if rate else ""
    )
    return name, True, f"This is a small starter model{measured}. Check what it reads."
