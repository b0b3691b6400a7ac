"""Hostile input never costs anyone their results.

Whatever users feed ``hmer predict`` (corrupted or truncated pictures, headers claiming huge
sizes, zip bombs, 16-bit, palette, CMYK, alpha and float pictures, strips, non-images with
image names, odd names, malformed InkML, folders, pipes, devices), each input gives one result
or one :class:`~hmer.errors.HmerError` naming it, the others are still read, nothing prints a
traceback, and reading any one file costs bounded memory.

The inputs come from the generators of ``benchmarks/fuzz_inputs.py`` (which reads 10,000 of them
the same way), a few of each kind from fixed seeds, and from hypothesis's mutations of valid
files and arrays (derandomized: the same examples every run).
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from hmer.cli import main
from hmer.cli.predict import expand_inputs
from hmer.data.inkml import RenderConfig
from hmer.data.preprocess import MAX_DECODED_PIXELS, PreprocessConfig, decode_image, preprocess
from hmer.errors import DataError
from hmer.runtime.inputs import prepare_image, read_encoded

ROOT = Path(__file__).resolve().parents[1]
#: The most resident memory a process reading these inputs one after another may reach. One
#: file alone stays under 1 GB (README, "Inputs"; 0.92 GB worst, benchmarks/RESULTS.md); run
#: inside the whole suite the same probe has measured above 1 GB (cause not isolated), so the
#: bound leaves room for that.
MEMORY_BOUND_MB = 1500


@pytest.fixture(scope="module")
def fuzz():
    """``benchmarks/fuzz_inputs.py`` as a module: the generators of every kind of input."""
    spec = importlib.util.spec_from_file_location(
        "fuzz_inputs", ROOT / "benchmarks" / "fuzz_inputs.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_inputs"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def random_model(fuzz, tmp_path_factory) -> Path:
    """configs/tiny.yaml's model with random weights: reading needs no trained model."""
    return fuzz.random_checkpoint(tmp_path_factory.mktemp("model") / "random.pt")


KINDS = [
    "corrupt", "empty", "tiny", "strip", "deep", "palette", "cmyk", "alpha", "float", "int32",
    "huge header", "not an image", "mislabeled", "inkml", "odd name", "special",
]  # fmt: skip


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_of_input_gives_a_result_or_an_error_naming_it(fuzz, kind, tmp_path):
    """Read as ``hmer predict`` reads (``expand_inputs``, then ``read_one`` per path): a model
    input within the size limits, or an HmerError whose message names the input."""
    assert {*KINDS, "bomb"} == set(fuzz.KINDS)  # bombs: test_reading_any_file_costs_bounded_memory
    reader = fuzz.reader()
    for seed in range(4):
        folder = tmp_path / str(seed)
        folder.mkdir()
        argument = fuzz.KINDS[kind](np.random.default_rng([seed, 12345]), folder)
        try:
            outcome, detail = fuzz.read_like_predict(argument, reader)
        finally:
            fuzz.unlock(folder)
        assert outcome in ("result", "error"), f"seed {seed}, {argument}: {detail}"


def _mixed_folder(fuzz, folder: Path, picture: np.ndarray) -> list[Path]:
    """One input of every kind in ``folder``, plus good pictures (one with a name that is not
    UTF-8); returns the good ones."""
    for number, kind in enumerate(KINDS):
        place = folder / f"made-{number}"  # no suffix: not an input itself
        place.mkdir()
        argument = fuzz.KINDS[kind](np.random.default_rng([number, 7]), place)
        if argument.parent == place:
            argument.rename(folder / f"{number}-{argument.name}")
    good = [folder / "good.png", folder / os.fsdecode(b"good-\xff.png")]
    for path in good:
        Image.fromarray(picture).save(path)
    return good


def test_one_bad_input_never_costs_the_others_their_results(fuzz, random_model, tmp_path):
    """``hmer predict FOLDER`` over one input of every kind: each image gets exactly one line,
    a result on stdout or an error on stderr naming it; the good pictures get results; no
    traceback; exit code 1. Under PYTHONIOENCODING=utf-8 a name that is not UTF-8 prints its
    bad bytes escaped (as ``\\udcff``)."""
    folder = tmp_path / "inputs"
    folder.mkdir()
    picture = fuzz.formula(np.random.default_rng(0), 60, 160)
    good = _mixed_folder(fuzz, folder, picture)
    expected, _ = expand_inputs([str(folder)])
    command = [sys.executable, "-m", "hmer", "predict", str(folder), "--json", "--beam", "1"]
    command += ["--checkpoint", str(random_model), "--engine", "torch", "--device", "cpu"]
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    done = subprocess.run(command, capture_output=True, env=env, timeout=600)
    fuzz.unlock(folder)
    out, err = done.stdout.decode(), done.stderr.decode()
    assert "Traceback" not in err and done.returncode == 1, err
    shown = [_escaped(str(path)) for path in expected]
    # JSON decodes an escaped byte back to the path's own character: escape it again.
    read = [_escaped(json.loads(line)["path"]) for line in out.splitlines()]
    failed = [line for line in err.splitlines() if line.startswith("hmer: error: ")]
    named = read + [next(name for name in shown if name in line) for line in failed]
    assert sorted(named) == sorted(shown)  # each input once, either read or failed
    assert all(_escaped(str(path)) in read for path in good)
    assert b'"path": "' + str(good[1]).encode("utf-8", "backslashreplace") in done.stdout


def _escaped(name: str) -> str:
    """``name`` as hmer prints it: an undecodable byte of a file name (a lone surrogate in
    Python) as ``\\udcXX``."""
    return name.encode("utf-8", "backslashreplace").decode()


MEMORY_PROBE = """
import resource, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import fuzz_inputs
reader = fuzz_inputs.reader()
for path in sys.argv[2:]:
    outcome, detail = fuzz_inputs.read_like_predict(Path(path), reader)
    print(path, outcome, detail.splitlines()[-1] if detail else "", flush=True)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def test_reading_any_file_costs_bounded_memory(fuzz, tmp_path):
    """Headers claiming up to 2**31 pixels a side, and zip bombs decoding to just under and
    over the pixel budget, read one after the other in one process (as ``hmer predict`` reads
    them) whose peak resident memory stays under the bound."""
    budget_height = MAX_DECODED_PIXELS // 8192
    files = {
        "claims-2**31.png": fuzz.png_claiming(2**31 - 1, 2**31 - 1),
        "claims-13400x13400.png": fuzz.png_claiming(13400, 13400, color=2, rows=100),
        "bomb-rgba-at-budget.png": fuzz.png_claiming(8192, budget_height, rows=budget_height),
        "bomb-over-budget.png": fuzz.png_claiming(8192, budget_height + 1, rows=budget_height),
        "claims-20000x20000.jpg": _jpeg_claiming(20000, 20000),
        "claims-65500x65500.jpg": _jpeg_claiming(65500, 65500),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    assert max(len(data) for data in files.values()) < 2**20  # all of them tiny files
    probe = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(ROOT / "benchmarks")]
        + [str(tmp_path / name) for name in files],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert probe.returncode == 0, probe.stderr
    *lines, peak = probe.stdout.splitlines()
    assert all(" crash " not in line for line in lines), lines
    assert "too large" in lines[0] and "too large" in lines[3] and "too large" in lines[5]
    assert int(peak) < MEMORY_BOUND_MB, lines


def _jpeg_claiming(width: int, height: int) -> bytes:
    """A 16 x 16 JPEG whose frame header says ``width`` x ``height``."""
    out = io.BytesIO()
    Image.new("L", (16, 16), 200).save(out, "JPEG")
    data = bytearray(out.getvalue())
    frame = data.index(b"\xff\xc0")
    data[frame + 5 : frame + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


_SUFFIXES = [".png", ".jpg", ".tiff", ".webp", ".bmp", ".gif"]


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    suffix=st.sampled_from(_SUFFIXES),
    mode=st.sampled_from(["L", "RGB", "RGBA", "P", "1"]),
    edits=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=12),
    cut=st.floats(0.05, 1.0),
)
def test_mutated_pictures_decode_or_are_a_data_error(fuzz, suffix, mode, edits, cut):
    """Valid pictures with bytes overwritten and the end cut off: decoded and prepared, or a
    DataError; never another exception."""
    picture = Image.fromarray(fuzz.formula(np.random.default_rng(len(edits)), 40, 90))
    data = bytearray(fuzz.encode(fuzz.writable(picture.convert(mode), suffix), suffix))
    for where, value in edits:
        data[min(int(where * len(data)), len(data) - 1)] = value
    data = bytes(data[: max(1, int(cut * len(data)))])
    try:
        image = preprocess(decode_image(data, "mutated"))
    except DataError as error:
        assert error.source == "mutated"
        return
    assert image.dtype == np.uint8 and image.ndim == 2


_PIXEL_TYPES = [np.uint8, np.uint16, np.int32, np.int64, np.float16, np.float32, np.float64]


@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    hnp.arrays(
        st.sampled_from(_PIXEL_TYPES),
        st.tuples(st.integers(1, 40), st.integers(1, 40))
        | st.tuples(st.integers(1, 40), st.integers(1, 40), st.integers(1, 5)),
    )
)
def test_any_array_prepares_or_is_a_data_error(array: np.ndarray):
    """Any shape, type and values (NaN, infinities, extremes): a model input within the size
    limits, or a DataError."""
    settings_ = PreprocessConfig()
    try:
        image = prepare_image(array, settings_, RenderConfig())
    except DataError:
        return
    assert image.dtype == np.uint8 and image.ndim == 2
    assert image.shape[0] <= settings_.max_height and image.shape[1] <= settings_.max_width


def test_other_inputs_are_bounded_and_checked_too(fuzz, monkeypatch):
    """A lazily opened PIL image is held to the pixel budget before it decodes; strokes with
    overflowing or subnormal coordinates are errors naming the stroke; standard input is read
    up to the size limit, no further."""
    import hmer.runtime.inputs

    lazy = Image.open(io.BytesIO(fuzz.png_claiming(9000, 9000)))  # Pillow opens it unwarned
    with pytest.raises(DataError, match="too large"):
        prepare_image(lazy, PreprocessConfig())
    for bad in (1e300, 5e-324, float("nan")):
        with pytest.raises(DataError, match="stroke 1"):
            prepare_image([[(0, 0), (5, 5)], [(0, 0), (bad, 1)]], PreprocessConfig())
    monkeypatch.setattr(hmer.runtime.inputs, "MAX_IMAGE_BYTES", 100)
    with pytest.raises(DataError, match="<stdin>: too large"):
        read_encoded(io.BytesIO(bytes(101)), "<stdin>")


def test_a_folder_that_cannot_be_listed_is_an_error_naming_it(tmp_path, monkeypatch):
    """(Simulated: this may run as root, whom permissions do not stop.)"""
    locked, fine = tmp_path / "locked", tmp_path / "fine"
    locked.mkdir()
    fine.mkdir()
    (fine / "a.png").write_bytes(b"")
    listing = Path.iterdir

    def iterdir(self):
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return listing(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    paths, errors = expand_inputs([str(locked), str(fine)])
    assert paths == [fine / "a.png"]
    assert errors == [f"{locked}: cannot read (Permission denied)"]


def test_bad_options_are_refused_before_any_work(random_model, tmp_path, capsys):
    """``--beam`` beyond the vocabulary, and ``--show`` naming a folder or an unknown format,
    are errors naming the option, not tracebacks."""
    picture = tmp_path / "x.png"
    Image.fromarray(np.full((40, 80), 255, np.uint8)).save(picture)
    model = ["--checkpoint", str(random_model), "--engine", "torch", "--device", "cpu"]
    code = main(["predict", str(picture), *model, "--beam", "100000"])
    assert code == 2 and "--beam 100000: at most the vocabulary size" in capsys.readouterr().err
    for show in (str(tmp_path), str(tmp_path / "out.xyz")):
        with pytest.raises(SystemExit) as caught:
            main(["predict", str(picture), "--show", show])
        assert caught.value.code == 2 and show in capsys.readouterr().err


def test_a_checkpoint_of_nan_weights_reads_every_input_without_a_traceback(
    random_model, tmp_path, capsys
):
    """Non-finite weights make every reading empty (the search ends at once), never a crash."""
    import torch

    payload = torch.load(random_model, weights_only=False)
    payload["model"] = {
        name: torch.full_like(value, float("nan")) if value.is_floating_point() else value
        for name, value in payload["model"].items()
    }
    broken = tmp_path / "nan.pt"
    torch.save(payload, broken)
    pictures = [tmp_path / "a.png", tmp_path / "b.png"]
    for path in pictures:  # a diagonal stroke on paper
        Image.fromarray(np.where(np.eye(40, 80, dtype=bool), 0, 255).astype(np.uint8)).save(path)
    model = ["--checkpoint", str(broken), "--engine", "torch", "--device", "cpu"]
    code = main(["predict", *map(str, pictures), *model, "--json"])
    out = capsys.readouterr().out
    assert code == 0
    assert [json.loads(line)["path"] for line in out.splitlines()] == list(map(str, pictures))
