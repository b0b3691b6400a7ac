"""Scoring checkpoints (``hmer evaluate``: table, per-expression TSVs) and the other CLI tools."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from helpers import TINY, tiny_config

from hmer.cli import build_parser, main
from hmer.engine.evaluate import EvalResult, format_table, rows_to_tsv
from hmer.metrics import ExpressionRow


def read_tsv(path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def test_evaluate_reproduces_the_runs_final_test_from_best_checkpoint(
    tiny_run,
    tiny_data,
    tmp_path,
    capsys,
):
    out = tmp_path / "eval"
    rc = main(
        [
            "evaluate", "--checkpoint", str(tiny_run / "best.pt"), "--data", str(tiny_data),
            "--split", "test", "--device", "cpu", "--out", str(out),
        ]
    )  # fmt: skip
    assert rc == 0
    printed = capsys.readouterr().out
    assert "ExpRate" in printed and "<=1" in printed and "test" in printed
    ours = json.loads((out / "results.json").read_text())["splits"]["test"]
    run = json.loads((tiny_run / "results.json").read_text())["splits"]["test"]
    # The run's single test evaluation used the validation-selected weights, i.e. best.pt.
    for key in ("exprate", "le1", "le2", "count"):
        assert ours[key] == run[key]
    assert read_tsv(out / "predictions_test.tsv") == read_tsv(tiny_run / "predictions_test.tsv")


def test_the_validation_split_rescores_the_runs_own_held_out_slice(tiny_run, tiny_data, tmp_path):
    """``--split validation`` draws the slice the run held out of its training data (its
    data.val_fraction and data.val_seed) and, decoded greedily, repeats the score that made
    best.pt best: weights from several runs can then be compared on data none of them saw."""
    import torch

    from hmer.engine.data import build_data

    out = tmp_path / "eval"
    rc = main(
        [
            "evaluate", "--checkpoint", str(tiny_run / "best.pt"), "--data", str(tiny_data),
            "--split", "validation", "--greedy", "--device", "cpu", "--out", str(out),
        ]
    )  # fmt: skip
    assert rc == 0
    ours = json.loads((out / "results.json").read_text())["splits"]["validation"]
    run = torch.load(tiny_run / "best.pt", map_location="cpu", weights_only=False)["meta"]["val"]
    for key in ("exprate", "le1", "le2", "count"):
        assert ours[key] == run[key]
    # The very samples training held out (the tiny run's config is tiny_config's).
    held_out = build_data(tiny_config(tiny_data, "train.ema=true"), load_tests=False).val
    names = [r["name"] for r in read_tsv(out / "predictions_validation.tsv")]
    assert sorted(names) == sorted(s.name for s in held_out)


def test_the_validation_split_reads_the_runs_own_training_data_without_a_test_folder(
    tiny_run, tiny_data, tmp_path, monkeypatch
):
    """A run trained on its own data scores ``--split validation`` with no --data and no CROHME
    folder anywhere: the slice comes from the run's ``data.train``, and results.json says so."""
    import hmer.engine.evaluate as evaluate

    monkeypatch.setattr(evaluate, "crohme_root", lambda: None)
    out = tmp_path / "eval"
    rc = main(
        [
            "evaluate", "--checkpoint", str(tiny_run / "best.pt"), "--split", "validation",
            "--greedy", "--device", "cpu", "--out", str(out),
        ]
    )  # fmt: skip
    assert rc == 0
    results = json.loads((out / "results.json").read_text())
    assert results["data"] == str(tiny_data)
    assert results["splits"]["validation"]["count"] > 0


def test_the_validation_split_needs_a_run_that_held_one_out(tiny_data, tmp_path, capsys):
    from hmer.engine.train import train

    run = tmp_path / "run"
    cfg = tiny_config(tiny_data, "train.max_steps=1", "data.val_on_train=true")
    assert train(cfg, run).status == "finished"
    rc = main(
        [
            "evaluate", "--checkpoint", str(run / "last.pt"), "--data", str(tiny_data),
            "--split", "validation", "--device", "cpu", "--out", str(tmp_path / "eval"),
        ]
    )  # fmt: skip
    assert rc == 2
    assert "held out no validation slice" in capsys.readouterr().err


def test_per_expression_tsv_has_one_row_per_expression_in_data_order(tiny_run):
    rows = read_tsv(tiny_run / "predictions_test.tsv")
    assert [r["name"] for r in rows] == [f"test_{i:03d}" for i in range(4)]
    assert set(rows[0]) == {"name", "truth", "prediction", "distance", "score"}
    assert all(float(r["score"]) <= 0.0 for r in rows)
    results = json.loads((tiny_run / "results.json").read_text())["splits"]["test"]
    exact = sum(r["distance"] == "0" for r in rows)
    assert results["exprate"] == pytest.approx(100.0 * exact / len(rows))


def test_a_caption_test_set_reports_the_three_exprates(tiny_run):
    """The tiny test set is a BTTR-layout folder: besides ExpRate against the normalized truth,
    the published-caption ExpRate (the papers' protocol) and the equivalence ExpRate."""
    results = json.loads((tiny_run / "results.json").read_text())["splits"]["test"]
    # Its captions are canonical already, so the three agree here; equivalence never counts less.
    assert results["exprate_published"] == results["exprate"]
    assert results["exprate_equiv"] >= results["exprate"]


def test_greedy_option_and_batch_size(tiny_run, tiny_data, tmp_path, capsys):
    rc = main(
        [
            "evaluate", "--checkpoint", str(tiny_run / "last.pt"), "--data", str(tiny_data),
            "--split", "test", "--greedy", "--batch-size", "1", "--device", "cpu",
            "--out", str(tmp_path),
        ]
    )  # fmt: skip
    assert rc == 0
    assert "greedy" in capsys.readouterr().out
    assert json.loads((tmp_path / "results.json").read_text())["splits"]["test"]["count"] == 4


def test_beam_width_and_length_penalty_override_the_checkpoints_and_are_recorded(
    tiny_run, tiny_data, tmp_path
):
    rc = main(
        [
            "evaluate", "--checkpoint", str(tiny_run / "best.pt"), "--data", str(tiny_data),
            "--split", "test", "--beam", "2", "--length-penalty", "0.5", "--device", "cpu",
            "--out", str(tmp_path),
        ]
    )  # fmt: skip
    assert rc == 0
    decode = json.loads((tmp_path / "results.json").read_text())["decode"]
    assert decode["beam"] == 2 and decode["length_penalty"] == 0.5
    assert decode["bidirectional"] is True  # the rest as the checkpoint has it


@pytest.mark.parametrize(
    ("option", "value", "reason"),
    [
        ("--length-penalty", "-1", "must be >= 0, got -1"),
        ("--beam", "0", "must be a positive integer, got 0"),
        ("--batch-size", "-2", "must be a positive integer, got -2"),
        ("--workers", "-1", "must be >= 0, got -1"),
    ],
)
def test_a_bad_decoding_option_is_refused_before_any_work(tiny_run, option, value, reason, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--checkpoint", str(tiny_run / "best.pt"), option, value])
    assert exit_info.value.code == 2
    assert f"{option}: {reason}" in capsys.readouterr().err


def test_evaluate_reports_a_bad_checkpoint_in_one_line(tmp_path, capsys):
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    rc = main(["evaluate", "--checkpoint", str(tmp_path / "bad.pt"), "--split", "2014"])
    assert rc == 2
    assert "bad.pt: cannot read checkpoint" in capsys.readouterr().err


def test_table_and_tsv_formats():
    rows = [ExpressionRow("a", "x ^ { 2 }", "x ^ { 2 }", 0), ExpressionRow("b", '"q"', "1\t2", 3)]
    result = EvalResult(
        "2014", "beam", {"exprate": 50.0, "le1": 50.0, "le2": 50.0, "count": 2}, [], rows
    )
    table = format_table([result]).splitlines()
    header = ["split", "method", "count", "ExpRate", "<=1", "<=2", "equiv", "published"]
    assert table[0].split() == header
    assert table[1].split() == ["2014", "beam", "2", "50.00", "50.00", "50.00", "nan", "-"]
    result.metrics |= {"exprate_equiv": 100.0, "exprate_published": 0.0}
    assert format_table([result]).splitlines()[1].split()[-2:] == ["100.00", "0.00"]
    tsv = rows_to_tsv(rows)
    parsed = list(csv.DictReader(tsv.splitlines(), delimiter="\t"))
    no_score = {"score": ""}
    assert [dict(r) for r in parsed] == [
        {"name": "a", "truth": "x ^ { 2 }", "prediction": "x ^ { 2 }", "distance": "0", **no_score},
        {"name": "b", "truth": '"q"', "prediction": "1\t2", "distance": "3", **no_score},
    ]


def test_plot_and_export_weights_commands(tiny_run, tmp_path, capsys):
    assert main(["plot", str(tiny_run), "--out", str(tmp_path / "curves.png")]) == 0
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["export-weights", str(tiny_run / "best.pt"), str(tmp_path / "w.pt")]) == 0
    assert "fp16" in capsys.readouterr().out
    assert (tmp_path / "w.pt").stat().st_size < (tiny_run / "last.pt").stat().st_size
    two = [str(tiny_run / "best.pt"), str(tiny_run / "last.pt")]
    assert main(["export-weights", *two, str(tmp_path / "soup.pt")]) == 0
    assert "the average of 2" in capsys.readouterr().out
    change = ["--set", "render.symbol_height=20", "--set", "decode.beam=2"]
    assert main(["export-weights", *two, str(tmp_path / "big.pt"), *change]) == 0
    config = torch.load(tmp_path / "big.pt", weights_only=True)["config"]
    assert config["render"]["symbol_height"] == 20 and config["decode"]["beam"] == 2


def test_options_may_come_between_and_after_a_commands_positionals():
    parser = build_parser()
    soup = parser.parse_args(["export-weights", "a.pt", "b.pt", "--set", "decode.beam=2", "o.pt"])
    assert soup.checkpoints == [Path("a.pt"), Path("b.pt")] and soup.out == Path("o.pt")
    assert soup.set == ["decode.beam=2"]
    run = parser.parse_args(["train", "tiny", "--out", "runs/x", "train.lr=1e-3"])
    assert (run.config, run.out, run.overrides) == ("tiny", Path("runs/x"), ["train.lr=1e-3"])
    info = parser.parse_args(["model", "info", "tiny", "model.d_model=32"])
    assert (info.model_command, info.config) == ("info", "tiny")
    assert info.overrides == ["model.d_model=32"]


def test_model_info_prints_the_configs_model_size(capsys):
    assert main(["model", "info", str(TINY), "model.d_model=32"]) == 0
    out = capsys.readouterr().out
    assert "d_model 32" in out and "parameters" in out and "GFLOPs" in out
