"""Metrics: ExpRate and its <=1 / <=2 variants, per-expression table, token edit distance."""

from __future__ import annotations

import pytest

from hmer.metrics import ExpressionRow, edit_distance, exprate, expression_table


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
