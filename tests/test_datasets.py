"""Datasets: every supported layout loads, bad items are skipped and counted (or raise, strict)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import strokes, write_inkml

from hmer.data.datasets import (
    Sample,
    SkipReport,
    crohme_split,
    dataset_stats,
    load_samples,
    write_bttr_layout,
)
from hmer.data.inkml import render_traces
from hmer.data.vocab import Vocab
from hmer.errors import DataError
from hmer.paths import CROHME_ENV


def image_bytes(count: int, suffix: str, dark_ink: bool) -> bytes:
    ink = render_traces(strokes(count))
    ok, data = cv2.imencode(suffix, 255 - ink if dark_ink else ink)
    assert ok
    return data.tobytes()


@pytest.fixture
def inkml_root(tmp_path: Path) -> Path:
    root = tmp_path / "inkml"
    write_inkml(root / "train" / "srcA" / "a1.inkml", 2, r"$x^2$")
    write_inkml(root / "train" / "srcA" / "a2.inkml", 3, r"$\frac1{2}$")
    write_inkml(root / "train" / "srcB" / "b1.inkml", 4, r"$\alpha\lt\beta$")
    write_inkml(root / "train" / "srcB" / "none.inkml", 2, None)
    (root / "train" / "srcB" / "broken.inkml").write_text("<ink><trace>1 2, 3</trace>")
    write_inkml(root / "train" / "srcB" / "badlabel.inkml", 2, r"$x^$")
    write_inkml(root / "2014" / "t1.inkml", 2, "$1+1$")
    return root


def test_inkml_folder_recursive_names_tokens_and_report(inkml_root: Path):
    samples, report = load_samples(inkml_root, "train")
    assert [s.name for s in samples] == ["srcA/a1", "srcA/a2", "srcB/b1"]
    assert samples[0].tokens == ["x", "^", "{", "2", "}"]
    assert samples[1].tokens == ["\\frac", "{", "1", "}", "{", "2", "}"]
    assert samples[2].tokens == ["\\alpha", "<", "\\beta"]
    for sample in samples:
        assert sample.image.dtype == np.uint8 and sample.image.max() == 255
        assert sample.image[0].max() == 0  # margin: ink 255 on a 0 background
    assert report.count == 3
    assert report.counts == {"no_truth": 1, "bad_inkml": 1, "bad_label": 1}
    assert any("broken.inkml" in m for m in report.examples["bad_inkml"])
    assert "none.inkml" in str(report)


def test_inkml_folder_without_split_and_limit(inkml_root: Path):
    samples, _ = load_samples(inkml_root / "2014")
    assert [s.name for s in samples] == ["t1"]
    limited, _ = load_samples(inkml_root, "train", limit=2)
    assert [s.name for s in limited] == ["srcA/a1", "srcA/a2"]
    picked, _ = load_samples(inkml_root, "train", limit=2, subset_seed=3)
    assert len(picked) <= 2


def test_strict_mode_names_the_bad_file(inkml_root: Path):
    with pytest.raises(DataError) as caught:
        load_samples(inkml_root, "train", strict=True)
    assert "broken.inkml" in str(caught.value) or "badlabel.inkml" in str(caught.value)


def test_worker_processes_give_the_same_result(inkml_root: Path):
    serial, serial_report = load_samples(inkml_root, "train")
    parallel, parallel_report = load_samples(inkml_root, "train", workers=2)
    assert [s.name for s in parallel] == [s.name for s in serial]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(serial, parallel, strict=True))
    assert parallel_report.counts == serial_report.counts


def test_cache_is_keyed_by_content_and_settings(inkml_root: Path, tmp_path: Path):
    from hmer.data.inkml import RenderConfig

    cache = tmp_path / "cache"
    first, _ = load_samples(inkml_root, "train", cache_dir=cache)
    stored = sorted(cache.rglob("*.npz"))
    assert len(stored) == 3
    again, report = load_samples(inkml_root, "train", cache_dir=cache)
    assert sorted(cache.rglob("*.npz")) == stored
    assert [s.tokens for s in again] == [s.tokens for s in first]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(first, again, strict=True))
    assert report.counts == {"no_truth": 1, "bad_inkml": 1, "bad_label": 1}
    load_samples(inkml_root, "train", cache_dir=cache, render=RenderConfig(stroke_width=3.0))
    assert len(list(cache.rglob("*.npz"))) == 6
    assert not list(cache.rglob("*.tmp"))
    write_inkml(inkml_root / "train" / "srcA" / "a1.inkml", 5, r"$x^2$")  # new content
    changed, _ = load_samples(inkml_root, "train", cache_dir=cache)
    assert changed[0].image.shape[1] > first[0].image.shape[1]


def test_unknown_tokens_are_reported_against_a_vocabulary(inkml_root: Path):
    vocab = Vocab(["x", "^", "{", "}", "2", "1", "\\frac"])
    samples, report = load_samples(inkml_root, "train", vocab=vocab)
    assert [s.name for s in samples] == ["srcA/a1", "srcA/a2"]
    assert report.counts["unknown_token"] == 1
    assert report.unknown_tokens == {"\\alpha": 1, "<": 1, "\\beta": 1}
    assert "\\alpha" in str(report)
    with pytest.raises(DataError, match="outside the vocabulary"):
        load_samples(inkml_root / "train" / "srcB", vocab=vocab, strict=True)


# --- BTTR / CoMER layout ----------------------------------------------------------------------


def make_bttr(root: Path, split: str = "2014") -> Path:
    folder = root / split
    (folder / "img").mkdir(parents=True)
    (folder / "18_em_0.bmp").write_bytes(image_bytes(2, ".bmp", dark_ink=False))
    (folder / "img" / "18_em_1.png").write_bytes(image_bytes(3, ".png", dark_ink=True))
    (folder / "18_em_2.jpg").write_bytes(image_bytes(4, ".jpg", dark_ink=True))
    (folder / "18_em_3.png").write_bytes(b"not an image")
    (folder / "18_em_5.png").write_bytes(image_bytes(2, ".png", dark_ink=True))
    (folder / "caption.txt").write_text(
        "18_em_0\tx ^ { 2 }\n"
        "18_em_1\t\\frac 1 2\n"  # the published convention leaves some arguments unbraced
        "\n"
        "18_em_2\ta + b\n"
        "18_em_3\ty\n"
        "18_em_4\tz\n"
        "18_em_5\t\n"
    )
    return root


def test_bttr_folder_images_beside_or_in_img_either_polarity(tmp_path: Path):
    samples, report = load_samples(make_bttr(tmp_path / "data"), "2014")
    assert [s.name for s in samples] == ["18_em_0", "18_em_1", "18_em_2"]
    # Tokens follow hmer's normalization; the caption as published is kept for the papers'
    # protocol (hmer evaluate's published ExpRate).
    assert samples[1].tokens == ["\\frac", "{", "1", "}", "{", "2", "}"]
    assert samples[1].published == ["\\frac", "1", "2"]
    assert samples[0].published == samples[0].tokens == ["x", "^", "{", "2", "}"]
    for sample in samples:  # white-on-black and black-on-white alike become ink 255 on 0
        assert sample.image[0].max() == 0 and sample.image.max() == 255
    assert report.counts == {"bad_image": 1, "missing_image": 1, "bad_label": 1}
    assert any("caption.txt:6" in m for m in report.examples["missing_image"])
    assert any("caption.txt:7" in m for m in report.examples["bad_label"])


def test_bttr_strict_names_file_and_line(tmp_path: Path):
    with pytest.raises(DataError) as caught:
        load_samples(make_bttr(tmp_path / "data"), "2014", strict=True)
    assert caught.value.line == 6 and caught.value.source.endswith("caption.txt")


def test_bttr_zip_with_a_top_level_folder(tmp_path: Path):
    make_bttr(tmp_path / "src" / "data")
    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted((tmp_path / "src").rglob("*")):
            zipped.write(path, path.relative_to(tmp_path / "src").as_posix())
    samples, report = load_samples(archive, "2014", workers=2)
    assert [s.name for s in samples] == ["18_em_0", "18_em_1", "18_em_2"]
    assert report.counts == {"bad_image": 1, "missing_image": 1, "bad_label": 1}
    assert any("data.zip:data/2014/18_em_3.png" in m for m in report.examples["bad_image"])
    with pytest.raises(DataError, match="2016"):
        load_samples(archive, "2016")


def test_caption_file_given_directly(tmp_path: Path):
    root = make_bttr(tmp_path / "data")
    samples, _ = load_samples(root / "2014" / "caption.txt")
    assert len(samples) == 3


# --- image folder + table ---------------------------------------------------------------------


def make_table_layout(root: Path) -> Path:
    for name, count in [("train/srcA/one", 2), ("train/srcB/two", 3), ("test/2016/three", 2)]:
        path = root / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(image_bytes(count, ".png", dark_ink=True))
    (root / "groundtruth_train.tsv").write_text(
        "srcA/one\tx^2\n"
        'srcB/two\t"\\frac{a}{\\sin A}\n"\n'
        "srcB/missing\ty\n"
        "lonely-field\n"
        "srcA/one.png\tx\n"
    )
    (root / "groundtruth_2016.tsv").write_text("three\t\\alpha + 1\n")
    return root


def test_table_with_quoted_multiline_rows_and_source_folders(tmp_path: Path):
    root = make_table_layout(tmp_path / "png")
    samples, report = load_samples(root, "train")
    assert [s.name for s in samples] == ["srcA/one", "srcB/two"]
    assert samples[1].tokens == ["\\frac", "{", "a", "}", "{", "\\sin", "A", "}"]
    assert report.counts == {"missing_image": 1, "bad_row": 1, "duplicate_name": 1}
    assert any("groundtruth_train.tsv:4" in m for m in report.examples["missing_image"])
    assert any("groundtruth_train.tsv:5" in m for m in report.examples["bad_row"])
    test, _ = load_samples(root, "2016")
    assert [s.name for s in test] == ["three"] and test[0].tokens == ["\\alpha", "+", "1"]


def test_table_strict_names_file_and_line(tmp_path: Path):
    root = make_table_layout(tmp_path / "png")
    with pytest.raises(DataError) as caught:
        load_samples(root / "groundtruth_train.tsv", strict=True)
    assert caught.value.line == 4 and caught.value.source.endswith("groundtruth_train.tsv")


def test_csv_with_header_and_commas_in_quotes(tmp_path: Path):
    root = make_table_layout(tmp_path / "mine")
    (root / "labels.csv").write_text('name,latex\ntrain/srcA/one,"f(x, y)"\n')
    samples, report = load_samples(root / "labels.csv")
    assert samples[0].tokens == ["f", "(", "x", ",", "y", ")"] and report.count == 0


def test_an_unterminated_quote_costs_its_own_row_only(tmp_path: Path):
    """A quote left open never swallows the rows below it into a label: the row where it
    opened is reported (lenient) or raised (strict), naming the file and line."""
    root = make_table_layout(tmp_path / "png")
    table = root / "quotes.tsv"
    table.write_text('srcA/one\tx^2\nsrcB/two\t"y - 2\nthree\t\\alpha\n')
    samples, report = load_samples(table)
    assert [(s.name, s.tokens) for s in samples] == [
        ("srcA/one", ["x", "^", "{", "2", "}"]),
        ("three", ["\\alpha"]),
    ]
    assert report.counts == {"bad_row": 1}
    assert report.examples["bad_row"][0].startswith(f"{table}:2: unterminated quote")
    with pytest.raises(DataError, match="unterminated quote") as caught:
        load_samples(table, strict=True)
    assert caught.value.source == str(table) and caught.value.line == 2


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ('srcA/one\tx\nsrcB/two\t"y - 2\n', 2),  # open at the end of the file
        ('srcA/one\t"x\nsrcB/two\ty"\n', 1),  # a later quote would close it: still open
        ('srcA/one\t"x" + 1\nsrcB/two\ty\n', 1),  # text after the closing quote
    ],
)
def test_rows_that_cannot_be_read_exactly_fail_strict_mode(tmp_path: Path, text: str, line: int):
    root = make_table_layout(tmp_path / "png")
    (root / "bad.tsv").write_text(text)
    with pytest.raises(DataError) as caught:
        load_samples(root / "bad.tsv", strict=True)
    assert caught.value.line == line and caught.value.source.endswith("bad.tsv")
    samples, report = load_samples(root / "bad.tsv")
    assert report.counts["bad_row"] == 1 and len(samples) == 1  # the other row still loads


def test_quotes_inside_a_label_and_doubled_quotes_are_text(tmp_path: Path):
    root = make_table_layout(tmp_path / "png")
    (root / "quoted.tsv").write_text('srcA/one\tx"\nsrcB/two\t"y""\n"\n')
    samples, report = load_samples(root / "quoted.tsv")
    assert report.count == 0
    assert [s.tokens for s in samples] == [["x", '"'], ["y", '"']]


def test_a_caption_file_has_no_quoting(tmp_path: Path):
    root = make_bttr(tmp_path / "data")
    caption = root / "2014" / "caption.txt"
    caption.write_text('18_em_0\t" x\n18_em_1\ta\x0cb\n18_em_4\ty "\n18_em_2\tz\n')
    samples, report = load_samples(root, "2014")
    assert [(s.name, s.published) for s in samples] == [
        ("18_em_0", ['"', "x"]),
        ("18_em_1", ["a", "b"]),
        ("18_em_2", ["z"]),
    ]
    # Only line endings end lines (not the form feed): the missing image's row is line 3.
    assert report.examples["missing_image"] == [f"{caption}:3: no image(s) for '18_em_4'"]


def test_bad_latex_in_a_table_names_the_line(tmp_path: Path):
    root = make_table_layout(tmp_path / "png")
    (root / "bad.tsv").write_text("srcA/one\tx^2\nsrcB/two\t\\frac{1}\n")
    _, report = load_samples(root / "bad.tsv")
    assert report.counts == {"bad_label": 1}
    assert "bad.tsv:2" in report.examples["bad_label"][0]


def test_unrecognized_sources_are_data_errors(tmp_path: Path):
    with pytest.raises(DataError, match="no such"):
        load_samples(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="cannot find split"):
        load_samples(tmp_path / "empty", "train")
    (tmp_path / "notes.md").write_text("hello")
    with pytest.raises(DataError, match="not a dataset"):
        load_samples(tmp_path / "notes.md")


# --- writing, stats, CROHME helpers -----------------------------------------------------------


def test_write_bttr_layout_round_trip(tmp_path: Path):
    images = [render_traces(strokes(n)) for n in (2, 3)]
    items = [("first", images[0], ["x", "^", "{", "2", "}"]), ("second", images[1], ["a"])]
    caption = write_bttr_layout(iter(items), tmp_path / "out", "train")
    assert caption == tmp_path / "out" / "train" / "caption.txt"
    assert caption.read_text() == "first\tx ^ { 2 }\nsecond\ta\n"
    assert not list((tmp_path / "out").rglob("*.tmp"))
    samples, report = load_samples(tmp_path / "out", "train")
    assert report.count == 0
    assert [(s.name, s.tokens) for s in samples] == [(n, t) for n, _, t in items]
    for sample, image in zip(samples, images, strict=True):
        assert abs(sample.image.shape[0] - image.shape[0]) <= 2


@pytest.mark.parametrize("name", ["", "a/b", "..", "tab\there"])
def test_write_bttr_layout_rejects_unsafe_names(tmp_path: Path, name: str):
    with pytest.raises(DataError, match="plain file name"):
        write_bttr_layout([(name, np.zeros((4, 4), np.uint8), ["x"])], tmp_path, "train")


def test_write_bttr_layout_rejects_duplicates(tmp_path: Path):
    item = ("a", np.zeros((4, 4), np.uint8), ["x"])
    with pytest.raises(DataError, match="twice"):
        write_bttr_layout([item, item], tmp_path, "train")


def test_dataset_stats():
    samples = [
        Sample("a", np.zeros((40, 100), np.uint8), ["x", "+", "\\weird"]),
        Sample("b", np.zeros((60, 300), np.uint8), ["1"]),
    ]
    stats = dataset_stats(samples, Vocab.crohme())
    assert stats["count"] == 2 and stats["tokens"] == 4
    assert stats["coverage"] == pytest.approx(0.75)
    assert stats["unknown"] == {"\\weird": 1}
    assert stats["height"]["max"] == 60 and stats["label_length"]["min"] == 1


def test_skip_report_summary():
    report = SkipReport(max_examples=1)
    report.add("missing_image", "a.tsv:2: no image")
    report.add("missing_image", "a.tsv:3: no image")
    assert report.count == 2
    assert report.examples["missing_image"] == ["a.tsv:2: no image"]
    assert "missing_image: 2" in str(report)
    assert str(SkipReport()) == "nothing skipped"


def test_crohme_split(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv(CROHME_ENV, str(tmp_path))
    assert crohme_split("2016") == (tmp_path / "inkml", "2016")
    with pytest.raises(DataError, match="unknown CROHME split"):
        crohme_split("2020")


# --- real data ----------------------------------------------------------------------------------


@pytest.mark.crohme
def test_crohme_2016_loads_completely_against_the_vocabulary(crohme: Path):
    samples, report = load_samples(*crohme_split("2016"), workers=2, vocab=Vocab.crohme())
    assert len(samples) == 1147 and report.count == 0
    stats = dataset_stats(samples, Vocab.crohme())
    assert stats["height"]["max"] <= 256 and stats["width"]["max"] <= 1024
    assert stats["coverage"] == 1.0


@pytest.mark.crohme
def test_crohme_png_tables_resolve_their_images(crohme: Path):
    # 8,853 lines, but quoted labels with embedded newlines make them 8,835 rows, one per image.
    listed, train = load_samples(crohme / "png", "train", limit=0)
    assert listed == [] and train.count == 0
    samples, report = load_samples(crohme / "png", "2016", limit=40, subset_seed=0)
    assert len(samples) == 40 and report.count == 0


def test_inkml_samples_keep_their_ink_when_asked(inkml_root: Path, tmp_path: Path):
    """Stroke-level augmentation draws a sample again from its online ink."""
    plain, _ = load_samples(inkml_root, "train")
    assert all(s.traces is None for s in plain)
    for cache in (None, tmp_path / "cache", tmp_path / "cache"):  # uncached, cold, warm cache
        kept, _ = load_samples(inkml_root, "train", keep_traces=True, cache_dir=cache)
        assert [s.name for s in kept] == [s.name for s in plain]
        by_name = {s.name: s for s in kept}
        assert len(by_name["srcA/a1"].traces) == 2 and len(by_name["srcB/b1"].traces) == 4
        assert all(t.dtype == np.float32 and t.shape[1] == 2 for t in by_name["srcB/b1"].traces)
        assert all(np.array_equal(a.image, b.image) for a, b in zip(kept, plain, strict=True))
