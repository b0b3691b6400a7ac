"""``make demo`` end to end, shrunk: synthetic data -> training -> held-out score -> reading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hmer.cli import main
from hmer.demo import run_demo
from hmer.errors import HmerError

ROOT = Path(__file__).resolve().parents[1]


def test_demo_writes_data_trains_scores_and_reads_the_example(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)  # in the checkout, the example is named as typed there
    assert run_demo(tmp_path, budget="25s", n_train=48, n_test=8) == 0
    out = capsys.readouterr().out
    assert "held-out synthetic ExpRate:" in out
    assert "data/examples/example.png, truth: \\frac { x - y ! }" in out
    assert "this run's model (hmer predict data/examples/example.png --checkpoint" in out
    (run,) = tmp_path.glob("run-*")
    results = json.loads((run / "results.json").read_text())
    assert set(results["splits"]) == {"test"} and results["splits"]["test"]["count"] == 8
    assert (run / "curves.png").is_file()
    assert len((tmp_path / "data" / "train" / "caption.txt").read_text().splitlines()) == 48


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"budget": "soon"}, "bad duration 'soon'"),
        ({"n_train": 0}, "n_train must be at least 1"),
        ({"n_test": -1}, "n_test must be at least 1"),
    ],
)
def test_demo_checks_its_arguments_before_writing_anything(arguments, named, tmp_path):
    out = tmp_path / "demo"
    with pytest.raises(HmerError, match=named):
        run_demo(out, **arguments)
    assert not out.exists()


def test_the_demo_command_refuses_a_count_below_one_before_writing_anything(tmp_path, capsys):
    out = tmp_path / "demo"
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--out", str(out), "--n-train", "0"])
    assert exit_info.value.code == 2
    assert "--n-train: must be a positive integer, got 0" in capsys.readouterr().err
    assert not out.exists()


def test_demo_refuses_an_output_folder_that_is_a_file(tmp_path):
    taken = tmp_path / "taken"
    taken.write_text("mine")
    with pytest.raises(HmerError, match=f"{taken}: exists and is not a folder"):
        run_demo(taken)
    assert taken.read_text() == "mine"
