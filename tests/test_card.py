"""Model cards: the card of NAME.pt is NAME.json beside it; its low_score entry says what a low
score means for that model, its calibration entry how often readings were right by score."""

from __future__ import annotations

import json

import pytest

from hmer.card import (
    LowScore,
    ScoreBin,
    card_path,
    read_card,
    read_low_score,
    read_score_bins,
)
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


CALIBRATION = {
    "split": "2014",
    "method": "beam",
    # Out of order on purpose: the reader sorts them by score.
    "bins": [
        {"low": -0.3, "high": -0.05, "count": 10, "exprate": 60.0},
        {"low": -1.2, "high": -0.31, "count": 10, "exprate": 5.0},
    ],
}


def test_the_calibration_tells_how_often_readings_scoring_like_one_were_right(tmp_path):
    model = tmp_path / "model.pt"
    assert read_score_bins(model) is None and read_score_bins(None) is None
    card_path(model).write_text(json.dumps({"calibration": CALIBRATION}))
    bins = read_score_bins(model)
    assert [b.low for b in bins.bins] == [-1.2, -0.3]
    low, high = bins.bins
    assert low == ScoreBin(-1.2, -0.31, 10, 5.0)
    assert bins.bin_of(-0.5) == low and bins.bin_of(-0.3) == high and bins.bin_of(-0.01) == high
    assert bins.bin_of(-0.305) == low  # between two ranges: the lower one
    assert bins.bin_of(-3.0) == low  # below every range: the lowest
    assert bins.note(-0.1) == (
        "readings of this model scoring from -0.30 to -0.05 were right 60% of the time on "
        "CROHME 2014"
    )


@pytest.mark.parametrize(
    ("calibration", "named"),
    [
        ({"split": "2014", "method": "beam", "bins": []}, "no bins"),
        ({"split": "2014", "method": "beam"}, "bins"),
        ({"split": "2014", "method": "beam", "bins": [{"low": -1, "high": 0}]}, "count"),
        ({"split": "2014", "bins": CALIBRATION["bins"]}, "method"),
    ],
)
def test_a_malformed_calibration_is_an_error_naming_the_card(tmp_path, calibration, named):
    model = tmp_path / "model.pt"
    card_path(model).write_text(json.dumps({"calibration": calibration}))
    with pytest.raises(CheckpointError, match=named) as error:
        read_score_bins(model)
    assert "model.json" in str(error.value) and "calibration" in str(error.value)
