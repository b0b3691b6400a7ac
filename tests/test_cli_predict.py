"""``hmer predict``: output formats, folders, bad files among good ones, pictures, default model."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from helpers import LABELS, paper, variants
from PIL import Image

from hmer.cli import main
from hmer.cli.predict import output_paths
from hmer.data.latex import tokens_to_latex

pytestmark = pytest.mark.usefixtures("single_thread")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: What ``hmer predict`` prints for :data:`LABELS`: compact LaTeX (``x+1``, not ``x + 1``).
LATEX = [tokens_to_latex(tokens) for tokens in LABELS]


@pytest.fixture()
def folder(renders, tmp_path) -> Path:
    """``a.png`` (dark on light), ``b.jpg`` (color photo-like), ``c.webp`` (reverse polarity),
    holding LABELS[0], [1], [2]; plus a text file that is not an image."""
    folder = tmp_path / "formulas"
    folder.mkdir()
    Image.fromarray(paper(renders[0])).save(folder / "a.png")
    Image.fromarray(variants(renders[1])["color"]).save(folder / "b.jpg", quality=95)
    Image.fromarray(renders[2]).save(folder / "c.webp", lossless=True)
    (folder / "notes.txt").write_text("not an image")
    return folder


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["predict", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_one_image_prints_its_latex(checkpoint, folder, capsys):
    code, out, err = _run(capsys, str(folder / "a.png"), "--checkpoint", str(checkpoint))
    assert code == 0 and err == ""
    assert out == LATEX[0] + "\n" and " " not in LATEX[0]


def test_tokens_prints_the_spaced_form(checkpoint, folder, capsys):
    argv = [str(folder / "a.png"), str(folder / "c.webp"), "--checkpoint", str(checkpoint)]
    code, out, _ = _run(capsys, *argv, "--tokens")
    assert code == 0
    assert out.splitlines() == [
        f"{folder / 'a.png'}\t{' '.join(LABELS[0])}",
        f"{folder / 'c.webp'}\t{' '.join(LABELS[2])}",
    ]


def test_a_folder_expands_to_its_images_sorted(checkpoint, folder, capsys):
    code, out, _ = _run(capsys, str(folder), "--checkpoint", str(checkpoint), "--beam", "3")
    assert code == 0
    lines = [line.split("\t") for line in out.splitlines()]
    assert [Path(path).name for path, _ in lines] == ["a.png", "b.jpg", "c.webp"]
    assert [latex for _, latex in lines] == LATEX


def test_bad_files_are_named_on_stderr_the_others_still_read(checkpoint, folder, capsys):
    broken = folder / "broken.png"
    broken.write_bytes(PNG_SIGNATURE + b"truncated")
    blank = folder / "blank.bmp"
    Image.fromarray(np.full((30, 60), 255, np.uint8)).save(blank)
    missing = folder / "missing.jpg"
    args = [str(folder / "a.png"), str(broken), str(missing), str(blank), str(folder / "c.webp")]
    code, out, err = _run(capsys, *args, "--checkpoint", str(checkpoint))
    assert code == 1
    assert [line.split("\t")[1] for line in out.splitlines()] == [LATEX[0], LATEX[2]]
    for path in (broken, missing, blank):
        assert str(path) in err
    assert "no ink" in err


def test_json_lines_parse_and_carry_the_score(checkpoint, folder, capsys):
    code, out, _ = _run(capsys, str(folder), "--checkpoint", str(checkpoint), "--json")
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["tokens"] for r in records] == LABELS
    for record in records:
        assert set(record) == {"path", "latex", "tokens", "score"}
        assert record["latex"] == tokens_to_latex(record["tokens"])
        assert -1.0 < record["score"] <= 0.0


def _odd_names(folder: Path) -> list[Path]:
    """Copies of ``a.png`` and ``c.webp`` whose names hold a comma, quotes and a tab (cells a
    table must quote), with a broken picture between them: inputs for the ``--out`` tables."""
    odd = folder.parent / "odd"
    odd.mkdir()
    good = [odd / 'one, "quoted".png', odd / "tab\there.webp"]
    good[0].write_bytes((folder / "a.png").read_bytes())
    good[1].write_bytes((folder / "c.webp").read_bytes())
    (odd / "broken.png").write_bytes(PNG_SIGNATURE + b"truncated")
    return [good[0], odd / "broken.png", good[1]]


def _read_table(path: Path) -> list[dict]:
    """The rows of an ``--out`` table, read back with the standard library."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines()]
    delimiter = "\t" if path.suffix == ".tsv" else ","
    return list(csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter))


@pytest.mark.parametrize("suffix", [".tsv", ".csv", ".jsonl"])
def test_out_writes_every_result_to_a_table_that_reads_back(
    checkpoint, folder, tmp_path, capsys, suffix
):
    inputs = _odd_names(folder)
    table = tmp_path / "tables" / f"results{suffix}"
    argv = [*map(str, inputs), "--checkpoint", str(checkpoint)]
    code, out, err = _run(capsys, *argv, "--out", str(table))
    assert code == 1 and out == ""  # the broken picture fails; the results are in the table
    assert f"hmer: wrote {table}" in err and f"{inputs[1]}:" in err
    rows = _read_table(table)
    assert [row["path"] for row in rows] == list(map(str, inputs))  # in argument order
    read, broken = [rows[0], rows[2]], rows[1]
    assert [row["latex"] for row in read] == [LATEX[0], LATEX[2]]
    if suffix == ".jsonl":  # the records --json prints, and the error of the broken input
        _, printed, _ = _run(
            capsys, str(inputs[0]), str(inputs[2]), "--checkpoint", str(checkpoint), "--json"
        )
        assert read == [json.loads(line) for line in printed.splitlines()]
        assert set(broken) == {"path", "error"}
    else:
        assert list(rows[0]) == ["path", "latex", "tokens", "score", "low_score", "error"]
        assert [row["tokens"] for row in read] == [" ".join(LABELS[0]), " ".join(LABELS[2])]
        assert all(-1.0 < float(row["score"]) <= 0.0 for row in read)
        assert all(row["low_score"] == row["error"] == "" for row in read)  # no card
        assert broken["latex"] == broken["tokens"] == broken["score"] == ""
    assert broken["error"].startswith(f"{inputs[1]}: ")


def test_out_format_and_destination_are_checked_before_any_work(tmp_path, capsys):
    missing = str(tmp_path / "no-such-model.pt")  # reading it would be an error of its own
    for argv, said in [
        (["--out", str(tmp_path / "results.xlsx")], "unknown table format '.xlsx'"),
        (["--out", str(tmp_path / "results")], "no suffix"),
        (["--out", str(tmp_path / "r.tsv"), "--json"], "not allowed with"),
    ]:
        with pytest.raises(SystemExit) as stopped:
            main(["predict", str(tmp_path), "--checkpoint", missing, *argv])
        assert stopped.value.code == 2 and said in capsys.readouterr().err
    (tmp_path / "a.png").write_bytes(PNG_SIGNATURE)
    (tmp_path / "file").write_text("a file, not a folder")
    out = tmp_path / "file" / "results.tsv"
    code, _, err = _run(capsys, str(tmp_path / "a.png"), "--checkpoint", missing, "--out", str(out))
    assert code == 2 and f"{out}: cannot write" in err and "no-such-model" not in err


def test_a_run_that_fails_midway_leaves_the_previous_table_whole(
    checkpoint, folder, tmp_path, monkeypatch, capsys
):
    """hmer.io's contract: the table replaces the old file only once every input is handled; an
    error (or Ctrl-C) after some rows were written leaves the old file and no temp file."""
    from hmer.runtime.reading import Reader

    table = tmp_path / "out" / "results.csv"
    table.parent.mkdir()
    table.write_text("the previous table\n")
    monkeypatch.setattr("hmer.cli.predict.CHUNK", 1)  # one image per chunk: rows before the stop
    original, calls = Reader.predict_images, []

    def stop_on_the_third_chunk(self, images, beam=10):
        calls.append(len(images))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, images, beam=beam)

    monkeypatch.setattr(Reader, "predict_images", stop_on_the_third_chunk)
    argv = [str(folder), "--checkpoint", str(checkpoint), "--engine", "torch", "--out", str(table)]
    with pytest.raises(KeyboardInterrupt):
        _run(capsys, *argv)
    assert len(calls) == 3
    assert table.read_text() == "the previous table\n"
    assert list(table.parent.iterdir()) == [table]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_on_a_terminal_that_results_do_not_go_to(
    checkpoint, folder, tmp_path, monkeypatch, capsys
):
    import sys

    monkeypatch.setattr("hmer.cli.predict.CHUNK", 1)  # three inputs are then "many"
    argv = [str(folder), "--checkpoint", str(checkpoint), "--engine", "torch"]
    bar = "3/3"  # tqdm's count of inputs done

    code, _, err = _run(capsys, *argv, "--out", str(tmp_path / "r.tsv"))
    assert code == 0 and bar not in err  # stderr is not a terminal (a file, a pipe, a CI log)

    def on_terminals(*extra: str, stdout_too: bool) -> str:
        stderr = _Terminal()
        monkeypatch.setattr(sys, "stderr", stderr)
        monkeypatch.setattr(sys, "stdout", _Terminal() if stdout_too else io.StringIO())
        assert main(["predict", *argv, *extra]) == 0
        return stderr.getvalue()

    shown = on_terminals("--out", str(tmp_path / "r.tsv"), stdout_too=True)
    assert bar in shown and f"hmer: wrote {tmp_path / 'r.tsv'}" in shown
    assert bar in on_terminals(stdout_too=False)  # results redirected to a file
    assert bar not in on_terminals(stdout_too=True)  # results printed where the bar would be


def test_a_model_card_makes_low_scores_said(checkpoint, folder, tmp_path, capsys):
    """With a card beside the checkpoint, readings below its low-score threshold are said on
    stderr and flagged in JSON; readings above it are not."""
    model = tmp_path / "model.pt"
    model.write_bytes(checkpoint.read_bytes())
    code, out, _ = _run(capsys, str(folder), "--checkpoint", str(model), "--json")
    scores = sorted(json.loads(line)["score"] for line in out.splitlines())
    threshold = (scores[0] + scores[1]) / 2  # only the lowest-scoring reading is below it
    card = {"threshold": threshold, "exprate": 3.0, "count": 40, "split": "2014", "method": "beam"}
    (tmp_path / "model.json").write_text(json.dumps({"low_score": card}))
    code, out, err = _run(capsys, str(folder), "--checkpoint", str(model), "--json")
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["low_score"] for r in records] == [r["score"] < threshold for r in records]
    assert sum(r["low_score"] for r in records) == 1
    (low,) = [r for r in records if r["low_score"]]
    assert err.count("low score") == 1 and low["path"] in err and "3% of the time" in err
    # A table says it in its low_score column instead, one note per row being noise on stderr.
    table = tmp_path / "results.csv"
    code, _, err = _run(capsys, str(folder), "--checkpoint", str(model), "--out", str(table))
    assert code == 0 and "low score" not in err
    assert [row["low_score"] for row in _read_table(table)] == [
        str(r["low_score"]).lower() for r in records
    ]
    # A card that is not JSON is an error naming it.
    (tmp_path / "model.json").write_text("{oops")
    code, _, err = _run(capsys, str(folder), "--checkpoint", str(model))
    assert code == 2 and "model.json" in err


def test_show_and_attention_write_pictures(checkpoint, folder, tmp_path, capsys):
    show, attention = tmp_path / "out" / "show.png", tmp_path / "out" / "attention.png"
    image = str(folder / "a.png")
    args = ["--checkpoint", str(checkpoint), "--show", str(show), "--attention", str(attention)]
    code, _, err = _run(capsys, image, *args)
    assert code == 0
    for path in (show, attention):
        assert path.read_bytes().startswith(PNG_SIGNATURE) and str(path) in err
    # Several inputs: one picture per input, named after it.
    code, _, _ = _run(capsys, image, str(folder / "c.webp"), *args)
    assert code == 0
    for stem in ("a", "c"):
        assert (tmp_path / "out" / f"show-{stem}.png").read_bytes().startswith(PNG_SIGNATURE)
        assert (tmp_path / "out" / f"attention-{stem}.png").stat().st_size > 1000


def test_pictures_fall_back_when_mathtext_cannot_render(tmp_path):
    from hmer.viz import draw_prediction, mathtext_ok

    assert mathtext_ok(r"\frac { 1 } { 2 }") and not mathtext_ok(r"\frac { 1 }")
    out = draw_prediction(np.zeros((20, 40), np.uint8), r"\frac { 1 }", tmp_path / "p.png")
    assert out.read_bytes().startswith(PNG_SIGNATURE)


def test_output_names_for_several_inputs_do_not_collide():
    inputs = [Path("x/a.png"), Path("y/a.png"), Path("b.jpg")]
    assert output_paths(Path("out/s.png"), inputs[:1]) == [Path("out/s.png")]
    names = [p.name for p in output_paths(Path("out/s.png"), inputs)]
    assert names == ["s-a.png", "s-a-2.png", "s-b.png"]


def test_default_model_is_the_shipped_one_or_a_clear_error(checkpoint, folder, monkeypatch, capsys):
    import hmer.paths

    shipped = folder.parent / "assets" / "model.pt"
    monkeypatch.setattr(hmer.paths, "default_model_path", lambda: shipped)
    code, out, err = _run(capsys, str(folder / "a.png"))
    assert code == 2 and out == ""
    assert "no shipped model" in err and "--checkpoint" in err
    shipped.parent.mkdir()
    shipped.write_bytes(checkpoint.read_bytes())
    code, out, _ = _run(capsys, str(folder / "a.png"), "--device", "cpu")
    assert code == 0 and out.strip() == LATEX[0]


def test_on_cpu_auto_reads_with_onnxruntime_from_a_cached_export(
    checkpoint, folder, private_cache, capsys
):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    image = str(folder / "a.png")
    code, out, err = _run(capsys, image, "--checkpoint", str(checkpoint), "--device", "cpu")
    assert code == 0 and err == "" and out.strip() == LATEX[0]
    exports = list((private_cache / "onnx").iterdir())
    assert len(exports) == 1 and (exports[0] / "model.json").is_file()
    for engine in ("onnx", "torch"):
        code, out, _ = _run(capsys, image, "--checkpoint", str(checkpoint), "--engine", engine)
        assert code == 0 and out.strip() == LATEX[0]
    assert list((private_cache / "onnx").iterdir()) == exports  # exported once


def test_a_cached_export_is_read_without_importing_torch(checkpoint, folder, private_cache):
    """torch (and timm) take seconds to import: a CLI call on a CPU does without them."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import subprocess
    import sys

    from hmer.runtime.export import cached_export

    cached_export(checkpoint)
    argv = ["predict", str(folder / "a.png"), "--checkpoint", str(checkpoint), "--device", "cpu"]
    code = (
        f"import sys; from hmer.cli import main; rc = main({argv!r}); "
        "print(sorted(m for m in ('torch', 'timm') if m in sys.modules)); sys.exit(rc)"
    )
    env = {**os.environ, "HMER_CACHE": str(private_cache)}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [LATEX[0], "[]"]


def test_without_a_gpu_driver_the_device_is_cpu_without_torch(monkeypatch):
    import sys

    import hmer.runtime.device

    monkeypatch.setattr(os.path, "exists", lambda path: False)
    monkeypatch.setattr("shutil.which", lambda name: None)
    monkeypatch.setitem(sys.modules, "torch", None)  # importing torch would now fail
    assert hmer.runtime.device.default_device() == "cpu"


def test_auto_falls_back_to_pytorch_when_the_export_fails(
    checkpoint, folder, monkeypatch, capsys, tmp_path
):
    pytest.importorskip("onnxruntime")
    import hmer.runtime.export

    monkeypatch.setenv("HMER_CACHE", str(tmp_path / "cache"))  # no export made yet

    def broken(path, **kwargs):
        raise RuntimeError("exporter crashed")

    monkeypatch.setattr(hmer.runtime.export, "cached_export", broken)
    image = str(folder / "a.png")
    code, out, err = _run(capsys, image, "--checkpoint", str(checkpoint), "--device", "cpu")
    assert code == 0 and out.strip() == LATEX[0]
    assert "exporter crashed" in err and "PyTorch" in err
    code, out, err = _run(capsys, image, "--checkpoint", str(checkpoint), "--engine", "onnx")
    assert code == 2 and out == "" and "exporter crashed" in err  # asked for: not replaced


def test_a_broken_onnx_folder_is_an_error_not_another_model(checkpoint, folder, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from hmer.runtime.export import cached_export
    from hmer.runtime.exports import FILES

    broken = tmp_path / "broken"
    broken.mkdir()
    for name in FILES.values():
        (broken / name).write_bytes((cached_export(checkpoint) / name).read_bytes())
    (broken / FILES["encoder"]).write_bytes(b"not an onnx graph")
    argv = [str(folder / "a.png"), "--onnx", str(broken), "--checkpoint", str(checkpoint)]
    code, out, err = _run(capsys, *argv)
    assert code == 2 and out == "" and f"--onnx {broken}" in err


@pytest.mark.parametrize(
    ("argv", "engine"),
    [
        (["--device", "cpu"], "onnx"),
        (["--device", "cuda"], "torch"),
        (["--device", "cpu", "--attention", "a.png"], "torch"),
        (["--device", "cpu", "--engine", "torch"], "torch"),
        (["--onnx", "dir"], "onnx"),
    ],
)
def test_engine_choice(argv, engine):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from hmer.cli import build_parser
    from hmer.cli.predict import choose_engine

    assert choose_engine(build_parser().parse_args(["predict", "x.png", *argv])) == engine


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--engine", "onnx", "--attention", "a.png"], "--attention"),
        (["--engine", "onnx", "--device", "cuda"], "--device cuda"),
        (["--engine", "torch", "--onnx", "dir"], "--onnx"),
    ],
)
def test_engine_conflicts_are_refused_naming_the_options(argv, named, capsys):
    code, out, err = _run(capsys, "x.png", *argv)
    assert code == 2 and out == ""
    assert named in err


def test_a_picture_piped_on_standard_input_is_read(checkpoint, folder, monkeypatch, capsys):
    import io
    import sys

    def stdin(data: bytes) -> None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))

    stdin((folder / "b.jpg").read_bytes())
    code, out, err = _run(capsys, "-", "--checkpoint", str(checkpoint), "--json")
    assert code == 0 and err == ""
    assert json.loads(out)["path"] == "-" and json.loads(out)["tokens"] == LABELS[1]
    stdin(b"")
    code, out, err = _run(capsys, "-", str(folder / "a.png"), "--checkpoint", str(checkpoint))
    assert code == 1 and "<stdin>" in err
    assert out.splitlines() == [f"{folder / 'a.png'}\t{LATEX[0]}"]
    code, _, err = _run(capsys, "-", "-", "--checkpoint", str(checkpoint))
    assert "standard input can be read once" in err


def test_no_readable_argument_exits_non_zero(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, err = _run(capsys, str(empty), str(tmp_path / "nothing.png"))
    assert code == 1 and out == ""
    assert "no images in this folder" in err and "nothing.png" in err


def test_the_repository_example_is_a_readable_formula_with_canonical_truth(checkpoint, capsys):
    from hmer.data.latex import normalize_latex
    from hmer.data.vocab import Vocab

    example = Path(__file__).resolve().parents[1] / "data" / "examples" / "example.png"
    truth = example.with_suffix(".txt").read_text().strip()
    tokens = normalize_latex(truth)
    assert " ".join(tokens) == truth and all(t in Vocab.crohme() for t in tokens)
    code, out, err = _run(capsys, str(example), "--checkpoint", str(checkpoint), "--json")
    assert code == 0 and err == ""
    assert json.loads(out)["path"] == str(example)


def write_inkml(path: Path, traces: list[np.ndarray], truth: str) -> Path:
    """A minimal CROHME-style InkML file."""
    body = "\n".join(
        f'<trace id="{i}">{", ".join(f"{x:.2f} {y:.2f}" for x, y in trace)}</trace>'
        for i, trace in enumerate(traces)
    )
    path.write_text(
        '<ink xmlns="http://www.w3.org/2003/InkML">\n'
        f'<annotation type="truth">${truth}$</annotation>\n{body}\n</ink>\n'
    )
    return path


def test_inkml_files_are_read_and_shown_as_ink_on_paper(checkpoint, tmp_path, capsys):
    from hmer.data.synth import draw
    from hmer.runtime.recognize import Recognizer

    traces = draw(LABELS[0], np.random.default_rng(1)).traces
    ink = write_inkml(tmp_path / "x.inkml", traces, "x+1")
    show = tmp_path / "show.png"
    code, out, _ = _run(capsys, str(ink), "--checkpoint", str(checkpoint), "--show", str(show))
    assert code == 0
    expected = Recognizer.from_checkpoint(checkpoint, device="cpu").predict(ink)
    assert out.strip() == expected.latex
    picture = np.asarray(Image.open(show).convert("L"))
    assert picture.mean() > 200  # white paper, dark ink


def test_version_is_printed(capsys):
    import hmer

    with pytest.raises(SystemExit) as stopped:
        main(["--version"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out.strip() == f"hmer {hmer.__version__}"
