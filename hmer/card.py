"""Model cards: what a checkpoint was trained on, how it scores, and what its scores mean.

The card of ``NAME.pt`` is ``NAME.json`` beside it (the shipped model's is
``hmer/assets/model.json``, with ``MODEL_CARD.md`` for people). It is written by
``scripts/model_card.py`` from ``hmer evaluate`` results. ``hmer predict`` and ``hmer serve``
read its ``low_score`` entry to say when a reading is unlikely to be right::

    {"low_score": {"threshold": -0.35, "exprate": 4.1, "count": 512,
                   "split": "2014", "method": "beam"}, ...}

meaning: on CROHME 2014, the 512 readings that scored below -0.35 were right 4.1% of the time.
This module imports neither torch nor timm (the CPU predict path stays light).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hmer.errors import CheckpointError

__all__ = ["LowScore", "card_path", "read_card", "read_low_score"]


@dataclass(frozen=True)
class LowScore:
    """Readings scoring below ``threshold`` were right ``exprate`` % of the time (``count`` of
    them, on test split ``split`` decoded with ``method``)."""

    threshold: float
    exprate: float
    count: int
    split: str
    method: str

    def is_low(self, score: float) -> bool:
        return score < self.threshold

    def note(self, score: float) -> str:
        """A sentence for a person, e.g. on stderr or on the page."""
        return (
            f"low score {score:.2f}: readings of this model scoring below {self.threshold:.2f} "
            f"were right {self.exprate:.0f}% of the time on CROHME {self.split}"
        )


def card_path(checkpoint: str | Path) -> Path:
    """Where the card of ``checkpoint`` lives: the same name with ``.json``."""
    return Path(checkpoint).with_suffix(".json")


def read_card(checkpoint: str | Path) -> dict[str, Any] | None:
    """The card of ``checkpoint`` as a dict, or None when it has none.

    Raises:
        CheckpointError: the card exists but is not a JSON object (the message names it).
    """
    path = card_path(checkpoint)
    if not path.is_file():
        return None
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise CheckpointError(f"{path}: cannot read the model card: {error}") from error
    if not isinstance(card, dict):
        raise CheckpointError(f"{path}: a model card is a JSON object")
    return card


def read_low_score(checkpoint: str | Path | None) -> LowScore | None:
    """The ``low_score`` entry of ``checkpoint``'s card; None without a card, entry or path.

    Raises:
        CheckpointError: the entry is malformed (the message names the card and the field).
    """
    card = read_card(checkpoint) if checkpoint is not None else None
    entry = card.get("low_score") if card is not None else None
    if entry is None:
        return None
    try:
        return LowScore(
            threshold=float(entry["threshold"]),
            exprate=float(entry["exprate"]),
            count=int(entry["count"]),
            split=str(entry["split"]),
            method=str(entry["method"]),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(
            f"{card_path(checkpoint)}: low_score: expected threshold, exprate, count, split "
            f"and method ({error!r})"
        ) from error
