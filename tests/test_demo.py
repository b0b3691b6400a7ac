"""``make demo`` end to end, shrunk: synthetic data -> training -> held-out score -> reading."""

from __future__ import annotations

import json

from hmer.demo import run_demo


def test_demo_writes_data_trains_scores_and_reads_the_example(tmp_path, capsys):
    assert run_demo(tmp_path, budget="25s", n_train=48, n_test=8) == 0
    out = capsys.readouterr().out
    assert "held-out synthetic ExpRate:" in out
    assert "example.png, truth: \\frac { x - y ! }" in out
    assert "this run's model (hmer predict data/examples/example.png --checkpoint" in out
    (run,) = tmp_path.glob("run-*")
    results = json.loads((run / "results.json").read_text())
    assert set(results["splits"]) == {"test"} and results["splits"]["test"]["count"] == 8
    assert (run / "curves.png").is_file()
    assert len((tmp_path / "data" / "train" / "caption.txt").read_text().splitlines()) == 48
