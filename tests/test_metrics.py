"""Metrics: ExpRate and its <=1 / <=2 variants, per-expression table, token edit distance."""

from __future__ import annotations

import pytest

from hmer.metrics import (
    ExpressionRow,
    edit_distance,
    equivalence_exprate,
    exprate,
    expression_table,
    low_score_threshold,
    score_bins,
)


def test_edit_distance_counts_token_edits():
    assert edit_distance(["\\frac", "{", "1", "}"], ["\\frac", "{", "1", "}"]) == 0
    assert edit_distance(["\\frac", "{", "1", "}"], ["\\frac", "{", "l", "}"]) == 1  # substitution
    assert edit_distance(["x", "^", "{", "2", "}"], ["x", "2"]) == 3  # deletions
    assert edit_distance([], ["a", "b"]) == 2
    assert edit_distance([5, 6, 7], [5, 7]) == 1  # ids work too
    assert edit_distance(["\\sin"], ["s", "i", "n"]) == 3  # tokens, not characters


def test_exprate_and_relaxed_rates():
    truths = [["a"], ["a", "+", "b"], ["x", "^", "{", "2", "}"], ["1"]]
    predictions = [["a"], ["a", "-", "b"], ["x", "^", "2"], ["1"]]  # distances 0, 1, 2, 0
    assert exprate(predictions, truths) == {"exprate": 50.0, "le1": 75.0, "le2": 100.0, "count": 4}
    assert exprate([], []) == {"exprate": 0.0, "le1": 0.0, "le2": 0.0, "count": 0}
    with pytest.raises(ValueError, match="2 predictions for 1 truths"):
        exprate([["a"], ["b"]], [["a"]])


def test_expression_table_rows():
    rows = expression_table(["e1", "e2"], [["a", "+", "b"], ["c"]], [["a", "+", "b"], []])
    assert rows == [ExpressionRow("e1", "a + b", "a + b", 0), ExpressionRow("e2", "c", "", 1)]
    assert max(rows, key=lambda r: r.distance).name == "e2"
    with pytest.raises(ValueError, match="names"):
        expression_table(["e1"], [["a"], ["b"]], [["a"], ["b"]])


def test_score_bins_cut_sorted_scores_into_equal_groups_lowest_first():
    scores = [-0.1, -2.0, -0.5, -1.5, -0.2, -3.0]
    correct = [True, False, True, False, False, False]
    bins = score_bins(scores, correct, bins=3)
    assert [(b["low"], b["high"], b["count"]) for b in bins] == [
        (-3.0, -2.0, 2),
        (-1.5, -0.5, 2),
        (-0.2, -0.1, 2),
    ]
    assert [b["exprate"] for b in bins] == [0.0, 50.0, 50.0]


def test_low_score_threshold_is_the_highest_cut_below_which_readings_are_rarely_right():
    scores = [-3.0, -2.5, -2.0, -1.0, -0.5, -0.1]
    correct = [False, False, False, True, True, True]
    # Below -1.0 nothing was right; with -1.0 included, a quarter would be: the cut is -1.0.
    assert low_score_threshold(scores, correct, max_exprate=0.0) == (-1.0, 0.0, 3)
    # A looser rate moves the cut up: 1 right of the 4 lowest is 25%.
    assert low_score_threshold(scores, correct, max_exprate=25.0) == (-0.5, 25.0, 4)
    # When the lowest reading was already right, no score counts as low.
    assert low_score_threshold([-2.0, -1.0], [True, False], max_exprate=5.0) is None
    # Ties are never split: "below t" is exactly the readings counted.
    threshold, _, count = low_score_threshold([-2.0, -1.0, -1.0], [False, False, True], 0.0)
    assert (threshold, count) == (-1.0, 1)
    # All readings wrong: every score is low, the highest one included.
    threshold, _, count = low_score_threshold([-2.0, -1.0], [False, False], 5.0)
    assert count == 2 and threshold > -1.0


def test_equivalence_exprate_counts_readings_that_render_the_same_formula():
    truths = [["\\frac", "{", "1", "}", "{", "2", "}"], ["a", ".", ".", "."], ["x"], ["y"]]
    predictions = [["\\frac", "1", "2"], ["a", "\\ldots"], ["{", "x", "}"], ["z"]]
    assert exprate(predictions, truths)["exprate"] == 0.0
    assert equivalence_exprate(predictions, truths) == 75.0
    assert equivalence_exprate([], []) == 0.0
    with pytest.raises(ValueError, match="predictions"):
        equivalence_exprate([["x"]], [])
