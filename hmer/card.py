"""Model cards: what a checkpoint was trained on, how it scores, and what its scores mean.

The card of ``NAME.pt`` is ``NAME.json`` beside it (the shipped model's is
``hmer/assets/model.json``, with ``MODEL_CARD.md`` for people). It is written by
``scripts/model_card.py`` from ``hmer evaluate`` results. ``hmer predict`` and ``hmer serve``
read its ``low_score`` entry to say when a reading is unlikely to be right::

    {"low_score": {"threshold": -0.35, "exprate": 4.1, "count": 512,
                   "split": "2014", "method": "beam"}, ...}

meaning: on CROHME 2014, the 512 readings that scored below -0.35 were right 4.1% of the time.
``hmer serve`` also reads its ``calibration`` entry, the same readings in fifths by score, to
tell how often readings scoring near any given score were right::

    {"calibration": {"split": "2014", "method": "beam",
                     "bins": [{"low": -1.1, "high": -0.49, "count": 196, "exprate": 5.1}, ...]}}
This module imports neither torch nor timm (the CPU predict path stays light).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from hmer.errors import CheckpointError

T = TypeVar("T")

__all__ = [
    "LowScore",
    "ScoreBin",
    "ScoreBins",
    "card_path",
    "read_card",
    "read_low_score",
    "read_score_bins",
]


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


@dataclass(frozen=True)
class ScoreBin:
    """The ``count`` readings scoring from ``low`` to ``high`` were right ``exprate`` % of the
    time."""

    low: float
    high: float
    count: int
    exprate: float


@dataclass(frozen=True)
class ScoreBins:
    """How often readings were right, by score range (``bins`` ascending, on test split
    ``split`` decoded with ``method``)."""

    bins: tuple[ScoreBin, ...]
    split: str
    method: str

    def bin_of(self, score: float) -> ScoreBin:
        """The bin ``score`` falls in: the last whose ``low`` it reaches (the first below all of
        them; scores between two bins' ranges count with the lower one)."""
        reached = [b for b in self.bins if score >= b.low]
        return reached[-1] if reached else self.bins[0]

    def note(self, score: float) -> str:
        """A sentence for a person, e.g. on the page."""
        found = self.bin_of(score)
        return (
            f"readings of this model scoring from {found.low:.2f} to {found.high:.2f} "
            f"were right {found.exprate:.0f}% of the time on CROHME {self.split}"
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
    return _read_entry(
        checkpoint,
        "low_score",
        "threshold, exprate, count, split and method",
        lambda entry: LowScore(
            threshold=float(entry["threshold"]),
            exprate=float(entry["exprate"]),
            count=int(entry["count"]),
            split=str(entry["split"]),
            method=str(entry["method"]),
        ),
    )


def read_score_bins(checkpoint: str | Path | None) -> ScoreBins | None:
    """The ``calibration`` entry of ``checkpoint``'s card; None without a card, entry or path.

    Raises:
        CheckpointError: the entry is malformed or has no bins (the message names the card and
            the field).
    """
    found = _read_entry(
        checkpoint,
        "calibration",
        "split, method and bins of low, high, count and exprate",
        lambda entry: ScoreBins(
            bins=tuple(
                sorted(
                    (
                        ScoreBin(
                            low=float(b["low"]),
                            high=float(b["high"]),
                            count=int(b["count"]),
                            exprate=float(b["exprate"]),
                        )
                        for b in entry["bins"]
                    ),
                    key=lambda b: b.low,
                )
            ),
            split=str(entry["split"]),
            method=str(entry["method"]),
        ),
    )
    if found is not None and not found.bins:
        raise CheckpointError(f"{card_path(checkpoint)}: calibration: no bins")
    return found


def _read_entry(
    checkpoint: str | Path | None, key: str, expected: str, build: Callable[[Any], T]
) -> T | None:
    """``build(card[key])`` for ``checkpoint``'s card; None without a card, entry or path; a
    CheckpointError naming the card, ``key`` and the ``expected`` fields when ``build`` fails."""
    card = read_card(checkpoint) if checkpoint is not None else None
    entry = card.get(key) if card is not None else None
    if entry is None:
        return None
    try:
        return build(entry)
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(
            f"{card_path(checkpoint)}: {key}: expected {expected} ({error!r})"
        ) from error
