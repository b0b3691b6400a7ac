"""hmer.runtime.results without a model: the order of ``--out`` rows, and names a table keeps."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hmer.errors import DataError
from hmer.runtime.reading import Prediction
from hmer.runtime.results import Results, ResultsTable


def _prediction(latex: str, tokens: list[str]) -> Prediction:
    return Prediction(latex=latex, tokens=tokens, score=-0.25)


def test_rows_follow_the_inputs_whatever_order_results_arrive_in(tmp_path: Path) -> None:
    inputs = [Path("a.png"), Path("b.png"), Path("a.png")]  # the same file twice: two rows
    table = tmp_path / "results.jsonl"
    with Results(table, inputs, json_lines=False, tokens=False, low=None) as results:
        results.failure(inputs[1], DataError("not a picture", inputs[1]))
        assert not table.exists()  # nothing in place before the end
        results.reading(inputs[0], _prediction("x^{2}", ["x", "^", "{", "2", "}"]))
        results.reading(inputs[2], _prediction("y", ["y"]))
    rows = [json.loads(line) for line in table.read_text(encoding="utf-8").splitlines()]
    assert [row["path"] for row in rows] == ["a.png", "b.png", "a.png"]
    assert [row.get("latex") for row in rows] == ["x^{2}", None, "y"]
    assert rows[1] == {"path": "b.png", "error": "b.png: not a picture"}


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_a_file_name_that_is_not_utf8_is_written_escaped(tmp_path: Path, suffix: str) -> None:
    name = os.fsdecode(b"scan\xff.png")  # how Python keeps such a name: a lone surrogate
    table = tmp_path / f"results{suffix}"
    with ResultsTable(table) as writer:
        writer.add({"path": name, "error": f"{name}: cannot read"})
    text = table.read_text(encoding="utf-8")  # valid UTF-8 throughout
    assert "scan\\udcff.png" in text


def test_an_error_inside_the_with_leaves_no_table_and_no_temp_file(tmp_path: Path) -> None:
    table = tmp_path / "results.csv"
    with pytest.raises(KeyboardInterrupt), ResultsTable(table) as writer:
        writer.add({"path": "a.png", "error": "a.png: cannot read"})
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
