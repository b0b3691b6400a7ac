"""``hmer data render | stats | preview`` end to end on a small generated InkML folder."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from hmer.cli import data as data_cli
from hmer.errors import DataError


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="hmer")
    data_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def write_inkml(path: Path, count: int, latex: str | None) -> None:
    t = np.linspace(0, 2 * math.pi, 20)
    traces = [
        np.stack([i * 12 + 3.5 * (1 + np.cos(t)), 5 * (1 + np.sin(t))], 1)
        if i % 2 == 0
        else np.array([[i * 12 + 2, 2], [i * 12 + 4, 0], [i * 12 + 4, 10]])
        for i in range(count)
    ]
    body = "".join(
        f"<trace>{', '.join(f'{x:.1f} {y:.1f}' for x, y in tr)}</trace>" for tr in traces
    )
    truth = "" if latex is None else f'<annotation type="truth">{latex}</annotation>'
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<ink>{truth}{body}</ink>")


@pytest.fixture
def inkml_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "inkml" / "train"
    write_inkml(folder / "srcA" / "one.inkml", 2, "$x^2$")
    write_inkml(folder / "srcB" / "two.inkml", 3, r"$\frac12$")
    write_inkml(folder / "srcB" / "three.inkml", 4, "$a+b$")
    write_inkml(folder / "srcB" / "none.inkml", 2, None)
    return folder


def test_render_writes_the_bttr_layout(inkml_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "bttr"
    assert run(["data", "render", str(inkml_dir), str(out), "--workers", "0"]) == 0
    caption = (out / "train" / "caption.txt").read_text().splitlines()
    assert caption == [
        "one\tx ^ { 2 }",
        "three\ta + b",
        "two\t\\frac { 1 } { 2 }",
    ]
    image = cv2.imread(str(out / "train" / "one.png"), cv2.IMREAD_UNCHANGED)
    assert image.dtype == np.uint8 and image.ndim == 2 and image.max() == 255
    printed = capsys.readouterr().out
    assert "wrote 3 images" in printed and "no_truth: 1" in printed


def test_render_split_name_and_strict(inkml_dir: Path, tmp_path: Path):
    out = tmp_path / "bttr"
    with pytest.raises(DataError, match=r"none\.inkml"):
        run(["data", "render", str(inkml_dir), str(out), "--workers", "0", "--strict"])
    assert run(["data", "render", str(inkml_dir / "srcA"), str(out), "--split", "mine"]) == 0
    assert (out / "mine" / "caption.txt").read_text() == "one\tx ^ { 2 }\n"


def test_stats_describes_a_dataset(inkml_dir: Path, capsys):
    assert run(["data", "stats", str(inkml_dir.parent), "--split", "train", "--workers", "0"]) == 0
    printed = capsys.readouterr().out
    assert "3 samples" in printed
    assert "100.00% of token occurrences" in printed
    assert "label_length" in printed and "height" in printed
    assert "no_truth: 1" in printed


def test_preview_writes_a_png_grid(inkml_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "grid.png"
    argv = ["data", "preview", str(inkml_dir), "--out", str(out), "--n", "2", "--variants", "2"]
    assert run(argv) == 0
    sheet = cv2.imread(str(out), cv2.IMREAD_GRAYSCALE)
    assert sheet is not None and sheet.shape[1] == 3 * (480 + 4)
    assert sheet.min() == 0
    assert not list(tmp_path.glob(".*tmp"))
    assert "2 samples" in capsys.readouterr().out


def test_preview_of_nothing_is_an_error(tmp_path: Path):
    folder = tmp_path / "empty" / "train"
    write_inkml(folder / "none.inkml", 2, None)
    with pytest.raises(DataError, match="nothing to preview"):
        run(["data", "preview", str(folder), "--out", str(tmp_path / "g.png")])
