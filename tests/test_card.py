"""Model cards: the card of NAME.pt is NAME.json beside it; its low_score entry says what a low
score means for that model."""

from __future__ import annotations

import json

import pytest

from hmer.card import LowScore, card_path, read_card, read_low_score
from hmer.errors import CheckpointError


def test_the_card_of_a_checkpoint_is_the_json_beside_it(tmp_path):
    model = tmp_path / "model.pt"
    assert card_path(model) == tmp_path / "model.json"
    assert read_card(model) is None and read_low_score(model) is None
    assert read_low_score(None) is None
    entry = {"threshold": -0.4, "exprate": 4.5, "count": 300, "split": "2014", "method": "beam"}
    card_path(model).write_text(json.dumps({"name": "starter", "low_score": entry}))
    assert read_card(model)["name"] == "starter"
    low = read_low_score(model)
    assert low == LowScore(-0.4, 4.5, 300, "2014", "beam")
    assert low.is_low(-0.41) and not low.is_low(-0.4) and not low.is_low(-0.1)
    assert low.note(-0.9) == (
        "low score -0.90: readings of this model scoring below -0.40 were right 4% of the time "
        "on CROHME 2014"
    )


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("{not json", "cannot read the model card"),
        ("[1, 2]", "a model card is a JSON object"),
        ('{"low_score": {"threshold": "high"}}', "low_score"),
        ('{"low_score": {"threshold": -1, "exprate": 1, "count": 1, "split": "2014"}}', "method"),
    ],
)
def test_a_malformed_card_is_an_error_naming_it(tmp_path, text, named):
    model = tmp_path / "model.pt"
    card_path(model).write_text(text)
    with pytest.raises(CheckpointError, match=named) as error:
        read_low_score(model)
    assert "model.json" in str(error.value)
