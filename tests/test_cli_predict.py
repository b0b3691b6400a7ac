"""``hmer predict``: output formats, folders, bad files among good ones, pictures, default model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from helpers import LABELS, paper, variants
from PIL import Image

from hmer.cli import main
from hmer.cli.predict import output_paths

pytestmark = pytest.mark.usefixtures("single_thread")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


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
    assert out == " ".join(LABELS[0]) + "\n"


def test_a_folder_expands_to_its_images_sorted(checkpoint, folder, capsys):
    code, out, _ = _run(capsys, str(folder), "--checkpoint", str(checkpoint), "--beam", "3")
    assert code == 0
    lines = [line.split("\t") for line in out.splitlines()]
    assert [Path(path).name for path, _ in lines] == ["a.png", "b.jpg", "c.webp"]
    assert [latex for _, latex in lines] == [" ".join(t) for t in LABELS]


def test_bad_files_are_named_on_stderr_the_others_still_read(checkpoint, folder, capsys):
    broken = folder / "broken.png"
    broken.write_bytes(PNG_SIGNATURE + b"truncated")
    blank = folder / "blank.bmp"
    Image.fromarray(np.full((30, 60), 255, np.uint8)).save(blank)
    missing = folder / "missing.jpg"
    args = [str(folder / "a.png"), str(broken), str(missing), str(blank), str(folder / "c.webp")]
    code, out, err = _run(capsys, *args, "--checkpoint", str(checkpoint))
    assert code == 1
    assert [line.split("\t")[1] for line in out.splitlines()] == [
        " ".join(LABELS[0]),
        " ".join(LABELS[2]),
    ]
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
        assert record["latex"] == " ".join(record["tokens"])
        assert -1.0 < record["score"] <= 0.0


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
    assert code == 0 and out.strip() == " ".join(LABELS[0])


def test_on_cpu_auto_reads_with_onnxruntime_from_a_cached_export(
    checkpoint, folder, private_cache, capsys
):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    image = str(folder / "a.png")
    code, out, err = _run(capsys, image, "--checkpoint", str(checkpoint), "--device", "cpu")
    assert code == 0 and err == "" and out.strip() == " ".join(LABELS[0])
    exports = list((private_cache / "onnx").iterdir())
    assert len(exports) == 1 and (exports[0] / "model.json").is_file()
    for engine in ("onnx", "torch"):
        code, out, _ = _run(capsys, image, "--checkpoint", str(checkpoint), "--engine", engine)
        assert code == 0 and out.strip() == " ".join(LABELS[0])
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
    assert run.stdout.splitlines() == [" ".join(LABELS[0]), "[]"]


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
    assert code == 0 and out.strip() == " ".join(LABELS[0])
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
    assert out.splitlines() == [f"{folder / 'a.png'}\t{' '.join(LABELS[0])}"]
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
