"""InkML parsing and rendering: what the files may contain, and what a render must look like."""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hmer.data.inkml import Ink, RenderConfig, ink_symbol_height, parse_inkml, render_traces
from hmer.data.preprocess import glyph_height
from hmer.errors import DataError

NS = "http://www.w3.org/2003/InkML"


def inkml_text(traces, latex: str | None = "$x$", namespace: bool = True, fmt: str = "") -> str:
    """An InkML document holding ``traces`` (lists of point strings or arrays)."""
    parts = [f'<ink xmlns="{NS}">' if namespace else "<ink>", fmt]
    if latex is not None:
        parts.append(f'<annotation type="truth">{latex}</annotation>')
    for i, trace in enumerate(traces):
        body = trace if isinstance(trace, str) else ", ".join(f"{x:g} {y:g}" for x, y in trace)
        parts.append(f'<trace id="{i}">{body}</trace>')
    parts.append("</ink>")
    return "\n".join(parts)


def glyphs(count: int, size: float = 10.0) -> list[np.ndarray]:
    """``count`` digit-like symbols of height ``size`` side by side: a ring, then a bar."""
    t = np.linspace(0, 2 * math.pi, 24)
    traces = []
    for i in range(count):
        x0 = i * size * 1.2
        if i % 2 == 0:
            traces.append(
                np.stack([x0 + size * 0.35 * (1 + np.cos(t)), size * 0.5 * (1 + np.sin(t))], 1)
            )
        else:
            traces.append(
                np.array(
                    [[x0 + size * 0.2, size * 0.2], [x0 + size * 0.4, 0.0], [x0 + size * 0.4, size]]
                )
            )
    return traces


# --- parsing ----------------------------------------------------------------------------------


def test_parses_points_with_two_or_three_values_integer_or_decimal():
    text = inkml_text(["10 20, 11 21, 12 22", "1.5 2.25 100, 3.5 4.75 110"], latex="$x^2$")
    ink = parse_inkml(text)
    assert isinstance(ink, Ink)
    assert ink.latex == "$x^2$"
    assert [t.shape for t in ink.traces] == [(3, 2), (2, 2)]
    np.testing.assert_allclose(ink.traces[0][2], [12, 22])
    np.testing.assert_allclose(ink.traces[1], [[1.5, 2.25], [3.5, 4.75]])
    assert ink.traces[0].dtype == np.float64


def test_without_namespace_and_with_channel_order_from_trace_format():
    fmt = '<traceFormat><channel name="T"/><channel name="X"/><channel name="Y"/></traceFormat>'
    ink = parse_inkml(inkml_text(["0 5 6, 1 7 8"], namespace=False, fmt=fmt))
    np.testing.assert_allclose(ink.traces[0], [[5, 6], [7, 8]])


def test_truth_is_the_expression_annotation_not_a_symbol_one(tmp_path: Path):
    text = inkml_text(["0 0, 1 1"], latex=None).replace(
        "</ink>",
        '<traceGroup><annotation type="truth">Segmentation</annotation></traceGroup></ink>',
    )
    path = tmp_path / "a.inkml"
    path.write_text(text)
    ink = parse_inkml(path)
    assert ink.latex is None
    assert ink.source == str(path)


def test_symbol_segmentation_comes_from_labelled_trace_groups():
    """Leaf trace groups become (label, trace indices), matched by trace id and counted among
    the kept (non-empty) traces; a group naming a missing trace, or without a label, is left
    out; the Segmentation group itself holds no traceView and is no symbol."""
    text = (
        '<ink xmlns="http://www.w3.org/2003/InkML">'
        '<annotation type="truth">$x+1$</annotation>'
        '<trace id="7">0 0, 1 1</trace><trace id="8"> </trace>'
        '<trace id="9">2 0, 3 1</trace><trace id="10">2 1, 3 0</trace>'
        '<trace id="11">5 0, 5 2</trace>'
        '<traceGroup><annotation type="truth">Segmentation</annotation>'
        '<traceGroup><annotation type="truth">x</annotation>'
        '<traceView traceDataRef="9"/><traceView traceDataRef="10"/></traceGroup>'
        '<traceGroup><annotation type="truth">+</annotation><traceView traceDataRef="7"/>'
        "</traceGroup>"
        '<traceGroup><annotation type="truth">1</annotation><traceView traceDataRef="99"/>'
        "</traceGroup>"
        '<traceGroup><traceView traceDataRef="11"/></traceGroup>'
        "</traceGroup></ink>"
    )
    ink = parse_inkml(text)
    assert len(ink.traces) == 4
    assert ink.symbols == (("x", (1, 2)), ("+", (0,)))
    assert parse_inkml(inkml_text(["0 0, 1 1"])).symbols == ()


def test_a_stray_latin1_byte_outside_the_traces_is_tolerated():
    text = inkml_text(["0 0, 1 1"], latex="$a \\cdot b$").replace("</ink>", "<m>\xb7</m></ink>")
    ink = parse_inkml(text.encode("latin-1"))
    assert ink.latex == "$a \\cdot b$" and len(ink.traces) == 1


def test_empty_traces_are_dropped_and_trailing_commas_tolerated():
    ink = parse_inkml(inkml_text(["0 0, 1 1,", "   "]))
    assert len(ink.traces) == 1 and ink.traces[0].shape == (2, 2)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("<ink><trace>0 0, 1", "malformed"),
        ("", "malformed"),
        ('<ink xmlns="x"><trace>0 0, 1 zz</trace></ink>', "bad number"),
        ("<ink><trace>0 0, 1</trace></ink>", "values"),
        ("<ink><trace>0 0, 1 2 3</trace></ink>", "values"),
        ("<ink><trace>nan 0</trace></ink>", "non-finite"),
        ("<ink><trace>1e999 0, 1 1</trace></ink>", "non-finite"),
        ("<ink><trace>1 2, 3 4 5, 6</trace></ink>", "ragged"),
        ("<ink><trace>-1e308 0, 1e308 10</trace></ink>", "beyond"),
        ("<ink><trace>5e-324 0, 0 1</trace></ink>", "subnormal"),
        ("<ink><annotation>x</annotation></ink>", "no trace"),
        ("<svg><trace>0 0</trace></svg>", "not InkML"),
    ],
)
def test_bad_files_raise_data_error_naming_the_file(tmp_path: Path, content: str, expected: str):
    path = tmp_path / "bad.inkml"
    path.write_text(content)
    with pytest.raises(DataError, match=expected) as caught:
        parse_inkml(path)
    assert str(path) in str(caught.value)
    assert caught.value.source == str(path)


def test_missing_file_is_a_data_error(tmp_path: Path):
    with pytest.raises(DataError, match="cannot read"):
        parse_inkml(tmp_path / "missing.inkml")


def test_errors_name_the_trace_by_id_or_position():
    with pytest.raises(DataError, match="trace 't7'"):
        parse_inkml('<ink><trace id="t7">0 0, 1 2 3</trace></ink>')
    with pytest.raises(DataError, match="trace #2: point 3 has 1 values"):
        parse_inkml("<ink><trace>0 0</trace><trace>0 0, 1 1, 2</trace></ink>")


def test_what_is_not_a_file_or_too_large_is_refused_before_reading(tmp_path: Path, monkeypatch):
    """A folder, a pipe (whose opening would wait for a writer forever) and a file above the
    size limit are errors naming them, nothing read from them; so is a file of too many
    traces."""
    import hmer.data.inkml

    folder = tmp_path / "folder.inkml"
    folder.mkdir()
    with pytest.raises(DataError, match="a folder") as caught:
        parse_inkml(folder)
    assert caught.value.source == str(folder)
    pipe = tmp_path / "pipe.inkml"
    os.mkfifo(pipe)
    with pytest.raises(DataError, match="a device, pipe or socket"):
        parse_inkml(pipe)
    large = tmp_path / "large.inkml"
    large.write_text(inkml_text(glyphs(3)))
    monkeypatch.setattr(hmer.data.inkml, "MAX_INKML_BYTES", large.stat().st_size - 1)
    with pytest.raises(DataError, match="too large") as caught:
        parse_inkml(large)
    assert caught.value.source == str(large)
    monkeypatch.setattr(hmer.data.inkml, "MAX_TRACES", 2)
    with pytest.raises(DataError, match="3 traces, more than 2"):
        parse_inkml(inkml_text(glyphs(3)))


_COORDINATE = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True),
    st.sampled_from([0.0, 5e-324, -2.2e-308, 1e9, 1e9 + 1, -1e308, 1e308, 1e-300]),
    st.integers(-(10**12), 10**12).map(float),
)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(st.lists(st.tuples(_COORDINATE, _COORDINATE), min_size=1, max_size=6), max_size=4))
def test_any_coordinates_parse_and_draw_or_are_a_data_error(traces: list[list[tuple]]):
    """Whatever the numbers (overflowing, subnormal, infinite, far apart), a file either parses
    to finite traces that draw within the size limits, or is a DataError."""
    text = inkml_text([", ".join(f"{x!r} {y!r}" for x, y in trace) for trace in traces])
    try:
        image = render_traces(parse_inkml(text).traces)
    except DataError:
        return
    cfg = RenderConfig()
    assert image.shape[0] <= cfg.max_height and image.shape[1] <= cfg.max_width


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_fuzz_arbitrary_bytes_only_raise_data_error(data: bytes):
    with contextlib.suppress(DataError):
        parse_inkml(b"<" + data)


_FRAGMENT = st.sampled_from(
    ["<ink>", "</ink>", f'<ink xmlns="{NS}">', "<trace>", "</trace>", '<trace id="1">',
     '<annotation type="truth">', "</annotation>", "<traceFormat>", "</traceFormat>",
     '<channel name="X"/>', '<channel name="Y"/>', "1 2", ", ", "3.5 -4e3", "nan", "x", "&amp;",
     "&bogus;", "<!-- c -->", "<![CDATA[1 2]]>", " ", "\n", "1 2 3", "\x00", "\ud800", "$x$"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(_FRAGMENT, max_size=25))
def test_fuzz_xml_like_text_only_raises_data_error(fragments: list[str]):
    text = "<" + "".join(fragments)
    try:
        ink = parse_inkml(text)
    except DataError:
        return
    assert all(t.ndim == 2 and t.shape[1] == 2 and np.isfinite(t).all() for t in ink.traces)


# --- rendering --------------------------------------------------------------------------------


def test_render_is_antialiased_ink_on_black_inside_a_margin():
    cfg = RenderConfig()
    image = render_traces(glyphs(4), cfg)
    assert image.dtype == np.uint8 and image.ndim == 2
    assert image.max() == 255
    assert np.count_nonzero((image > 0) & (image < 255)) > 0  # anti-aliased edges
    assert np.count_nonzero(image) < 0.5 * image.size  # ink is the minority
    inner = cfg.margin - 1
    border = np.concatenate(
        [
            image[:inner].ravel(),
            image[-inner:].ravel(),
            image[:, :inner].ravel(),
            image[:, -inner:].ravel(),
        ]
    )
    assert not border.any()


def test_glyph_scale_is_normalized_whatever_the_units_and_the_expression_length():
    short = render_traces(glyphs(2, size=10.0))
    scaled = render_traces([t * 37.0 for t in glyphs(2, size=10.0)])
    long = render_traces(glyphs(16, size=3.0))
    assert short.shape == scaled.shape
    assert abs(long.shape[0] - short.shape[0]) <= 1  # same glyph height, whatever the length
    assert long.shape[1] > 4 * short.shape[1]
    for image in (short, long):
        assert glyph_height(image) == pytest.approx(32.0, rel=0.03)


def test_symbol_height_ignores_flat_and_tiny_traces():
    traces = glyphs(3, size=10.0)
    with_bars = [*traces, np.array([[0.0, 12.0], [40.0, 12.0]]), np.array([[5.0, -3.0]])]
    assert ink_symbol_height(with_bars) == pytest.approx(ink_symbol_height(traces), rel=0.01)


def test_symbol_height_config_scales_the_output():
    small = render_traces(glyphs(3), RenderConfig(symbol_height=24.0))
    large = render_traces(glyphs(3), RenderConfig(symbol_height=48.0))
    assert glyph_height(large) == pytest.approx(48.0, rel=0.04)
    assert glyph_height(small) == pytest.approx(24.0, rel=0.04)


def test_limits_shrink_long_expressions():
    cfg = RenderConfig(max_height=64, max_width=300, max_area=64 * 200)
    image = render_traces(glyphs(40), cfg)
    height, width = image.shape
    assert height <= 64 and width <= 300 and height * width <= 64 * 200
    tall = render_traces([np.array([[0.0, 0.0], [0.0, 100.0]]), *glyphs(1, size=1.0)], cfg)
    assert tall.shape[0] <= 64


def test_stroke_width_is_close_to_the_request():
    ring = [glyphs(1, size=200.0)[0]]
    for width in (2.0, 3.0, 4.0):
        image = render_traces(ring, RenderConfig(symbol_height=100.0, stroke_width=width))
        rows = np.flatnonzero(image.max(axis=1) > 127)
        cols = np.flatnonzero(image.max(axis=0) > 127)
        # Ellipse through the stroke centres (Ramanujan's perimeter).
        a = (cols[-1] - cols[0] + 1 - width) / 2
        b = (rows[-1] - rows[0] + 1 - width) / 2
        length = math.pi * (3 * (a + b) - math.sqrt((3 * a + b) * (a + 3 * b)))
        mean_width = image.sum() / 255.0 / length
        assert mean_width == pytest.approx(width, abs=0.5)


def test_huge_coordinate_ranges_draw_on_a_bounded_canvas():
    """Glyphs a billion units apart are drawn small, not on a billion-pixel canvas: the scale
    comes from the symbols, the size limits shrink the rest."""
    far = [*glyphs(1, size=10.0), *(np.add(t, (9e8, 5e8)) for t in glyphs(1, size=10.0))]
    image = render_traces(far)
    cfg = RenderConfig()
    assert image.shape[0] <= cfg.max_height and image.shape[1] <= cfg.max_width
    assert image.max() == 255


def test_dots_are_drawn():
    image = render_traces([*glyphs(2), np.array([[30.0, 5.0]])])
    alone = render_traces(glyphs(2))
    assert image.shape[1] > alone.shape[1]
    assert image[:, alone.shape[1] :].max() >= 128


def test_no_ink_is_a_data_error():
    with pytest.raises(DataError, match="no ink"):
        render_traces([np.zeros((0, 2))])
    with pytest.raises(DataError, match="no room"):
        render_traces(glyphs(2), RenderConfig(max_height=8))


# --- real data --------------------------------------------------------------------------------

CROHME_COUNTS = {"train": 8835, "2014": 986, "2016": 1147, "2019": 1199}


def _truth_flag(path: str) -> int:
    """1: truth, 0: no truth, -1: unparseable."""
    try:
        return int(parse_inkml(path).latex is not None)
    except DataError:
        return -1


def _renders(path: str) -> tuple[int, int]:
    image = render_traces(parse_inkml(path).traces)
    return image.shape


@pytest.mark.crohme
def test_crohme_counts_and_every_sampled_file_renders(crohme: Path):
    began = time.perf_counter()
    files = {
        split: sorted(map(str, (crohme / "inkml" / split).rglob("*.inkml")))
        for split in CROHME_COUNTS
    }
    # A fresh process per worker (forkserver): forking after OpenCV ran can deadlock.
    with multiprocessing.get_context("forkserver").Pool(2) as pool:
        flags = {
            split: pool.map(_truth_flag, paths, chunksize=64) for split, paths in files.items()
        }
        parsed = time.perf_counter()
        sample = files["2016"] + files["train"][::9] + files["2014"][::9] + files["2019"][::9]
        shapes = pool.map(_renders, sample, chunksize=32)
    rendered = time.perf_counter()
    for split, expected in CROHME_COUNTS.items():
        assert flags[split].count(1) == expected, split
    # The one train file without truth is empty (0 bytes): reported, never fatal.
    assert flags["train"].count(1) + flags["train"].count(-1) + flags["train"].count(0) == 8836
    cfg = RenderConfig()
    assert all(
        h <= cfg.max_height and w <= cfg.max_width and h * w <= cfg.max_area for h, w in shapes
    )
    print(
        f"\nparsed {sum(map(len, files.values()))} files in {parsed - began:.1f} s, rendered "
        f"{len(sample)} in {rendered - parsed:.1f} s (2 processes)"
    )
