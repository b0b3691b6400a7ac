"""CROHME InkML: parse online ink, render it to an image at a normalized glyph scale.

Conventions: coordinates are float64 ``(x, y)`` with y growing downward (screen order, as in the
files); rendered images are uint8 ``(H, W)`` with ink 255 on background 0, anti-aliased.

The render scale comes from the ink itself (:func:`ink_symbol_height`, then checked with the
image measure :func:`hmer.data.preprocess.glyph_height`), not from the expression's bounding box,
so a typical glyph gets ``symbol_height`` pixels whether the expression is ``x`` or a three-line
integral. That is what makes training renders look like preprocessed user images.

:func:`load_image` reads any input file, picture or InkML, as pixels. It lives here, above
:mod:`hmer.data.preprocess` (which this module builds on), so imports go one way only.
"""

from __future__ import annotations

import functools
import math
import os
import stat
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np

from hmer.data.preprocess import decode_image, fit_scale, glyph_height
from hmer.errors import DataError

#: Fixed-point bits used for sub-pixel coordinates in cv2 drawing calls.
_SHIFT = 4


#: One written symbol: its truth label (e.g. ``\\int``) and the indices of its traces.
Symbol = tuple[str, tuple[int, ...]]


@dataclass(frozen=True)
class Ink:
    """One handwritten expression as online ink.

    ``traces``: pen-down strokes, each ``(N, 2)`` float64 ``(x, y)``, y downward, file units.
    ``latex``: the raw expression truth (e.g. ``$\\frac1{2}$``), None when the file has none.
    ``source``: where it came from (a path, or ``<text>``), for error messages.
    ``symbols``: the file's symbol segmentation, ``(truth label, indices into traces)`` per
    symbol (CROHME's leaf ``<traceGroup>`` elements), empty when the file has none.
    """

    traces: tuple[np.ndarray, ...]
    latex: str | None
    source: str
    symbols: tuple[Symbol, ...] = ()


#: Largest InkML file read: 64 times CROHME's largest (61 KB). Parsing costs memory and time
#: in proportion (XML elements, one Python string per number).
MAX_INKML_BYTES = 4 * 2**20
#: Most traces an InkML file may hold: 87 times CROHME's most (115). Each costs a Python call to
#: parse and one to draw: 4 MiB of one-point traces would take seconds.
MAX_TRACES = 10_000
#: Largest picture file read (a 200-megapixel phone photo is about 30 MB).
MAX_IMAGE_BYTES = 64 * 2**20


def read_stream(stream: BinaryIO, max_bytes: int, source: str | Path) -> bytes:
    """All of ``stream``, refused (DataError naming ``source``) beyond ``max_bytes``: the
    memory an input costs is bounded before it is read, whatever it is."""
    try:
        data = stream.read(max_bytes + 1)
    except OSError as error:
        raise DataError(f"cannot read ({error.strerror or error})", source) from None
    if len(data) > max_bytes:
        raise DataError(f"too large: more than {max_bytes / 2**20:g} MiB", source)
    return data


def read_file(path: str | Path, max_bytes: int, source: str | Path | None = None) -> bytes:
    """The bytes of the regular file ``path`` (:func:`read_stream`).

    A folder, device, pipe or socket is refused before it is opened: ``/dev/zero`` never ends,
    and opening a pipe without a writer waits forever.

    Raises:
        DataError: missing, unreadable, not a regular file, or too large (naming ``source``,
            default ``path``).
    """
    source = path if source is None else source
    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            kind = "a folder" if stat.S_ISDIR(mode) else "a device, pipe or socket"
            raise DataError(f"cannot read: {kind}, not a file", source)
        with open(path, "rb") as handle:
            return read_stream(handle, max_bytes, source)
    except OSError as error:
        raise DataError(f"cannot read ({error.strerror or error})", source) from None
    except ValueError as error:  # a path with a NUL byte
        raise DataError(f"cannot read ({error})", source) from None


def _xy_columns(root: ET.Element, ns: str) -> tuple[int, int]:
    """Column indices of X and Y from the ``<traceFormat>``; (0, 1) when it is absent."""
    trace_format = root.find(f".//{ns}traceFormat")
    if trace_format is not None:
        names = [c.get("name", "") for c in trace_format.iter(f"{ns}channel")]
        if "X" in names and "Y" in names:
            return names.index("X"), names.index("Y")
    return 0, 1


def _parse_trace(text: str, columns: tuple[int, int], source: str, where: str) -> np.ndarray:
    """``"x y [t], x y [t], ..."`` -> ``(N, 2)`` float64 X and Y; DataError naming the file and
    ``where`` (the trace) on anything else: a point with more or fewer values than the first (a
    ragged trace), too few values, a bad number, or coordinates :func:`coordinate_problem`
    refuses."""
    cleaned = text.strip().rstrip(",")
    counts = [len(point.split()) for point in cleaned.split(",")]
    width = counts[0]
    if width <= max(columns):
        raise DataError(f"{where}: points must all have {max(columns) + 1}+ values", source)
    ragged = next((i for i, count in enumerate(counts) if count != width), None)
    if ragged is not None:
        raise DataError(
            f"{where}: point {ragged + 1} has {counts[ragged]} values, point 1 has {width} "
            "(a ragged trace)",
            source,
        )
    try:
        array = np.array(cleaned.replace(",", " ").split(), dtype=np.float64)
    except ValueError as error:
        raise DataError(f"{where}: bad number ({error})", source) from None
    points = array.reshape(len(counts), width)[:, columns]
    problem = coordinate_problem(points)
    if problem is not None:
        raise DataError(f"{where}: {problem}", source)
    return points


#: Largest coordinate magnitude drawn: far beyond any digitizer's range (CROHME's largest:
#: 26,406), and small enough that every extent, area and scale computed from ink stays finite.
MAX_COORDINATE = 1e9


def coordinate_problem(points: np.ndarray) -> str | None:
    """Why ``(N, 2)`` float64 points cannot be drawn, or None: a non-finite coordinate, one
    beyond :data:`MAX_COORDINATE`, or a subnormal one (too close to 0 for float64 arithmetic
    to keep its precision: ``5e-324``)."""
    magnitude = np.abs(points)
    bad = ~np.isfinite(points)
    if bad.any():
        return f"non-finite coordinate {points[bad][0]}"
    beyond = magnitude > MAX_COORDINATE
    if beyond.any():
        return f"coordinate {points[beyond][0]:g} beyond +-{MAX_COORDINATE:g}"
    subnormal = (magnitude > 0) & (magnitude < np.finfo(np.float64).tiny)
    if subnormal.any():
        return f"subnormal coordinate {points[subnormal][0]:g} (too close to 0 to compute with)"
    return None


def _trace_name(element: ET.Element, number: int) -> str:
    """How messages name a ``<trace>``: by its id, else by its position (``trace #3``)."""
    trace_id = element.get("id")
    return f"trace {trace_id!r}" if trace_id else f"trace #{number}"


def _parse_xml(data: str | bytes) -> ET.Element:
    """Parse XML; bytes that are not valid UTF-8 are retried with the bad bytes replaced.

    One CROHME train file has a Latin-1 byte in its MathML annotation (which is not used).
    """
    try:
        return ET.fromstring(data)
    except ET.ParseError:
        if not isinstance(data, bytes):
            raise
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return ET.fromstring(data.decode("utf-8", errors="replace"))
        raise


def parse_inkml(path_or_text: str | Path | bytes, source: str | None = None) -> Ink:
    """Read InkML from a path, or from its text/bytes (anything starting with ``<``).

    Namespace-aware (any namespace, or none); points may carry 2 or more channels (X and Y are
    located via ``<traceFormat>``); coordinates integer or decimal. The truth is the root's
    ``<annotation type="truth">``; symbol-level truths inside trace groups become ``symbols``
    (a group that names a trace the file lacks is left out: segmentation is optional). Empty
    traces are dropped.

    Raises:
        DataError: unreadable file, malformed XML, a bad point, or no trace at all; the message
            names ``source`` (default: the path, or ``<text>``).
    """
    if isinstance(path_or_text, bytes):
        data: str | bytes = path_or_text
        source = source or "<bytes>"
    elif isinstance(path_or_text, str) and path_or_text.lstrip().startswith("<"):
        data = path_or_text
        source = source or "<text>"
    else:
        source = source or str(path_or_text)
        data = read_file(path_or_text, MAX_INKML_BYTES, source)
    try:
        root = _parse_xml(data)
    except (ET.ParseError, ValueError, UnicodeError) as error:
        raise DataError(f"malformed InkML ({error})", source) from None
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    if root.tag != f"{ns}ink":
        raise DataError(f"not InkML: root element is <{root.tag}>", source)
    columns = _xy_columns(root, ns)
    elements = list(root.iter(f"{ns}trace"))
    if len(elements) > MAX_TRACES:
        raise DataError(f"{len(elements):,} traces, more than {MAX_TRACES:,}", source)
    kept = [
        (number, element)
        for number, element in enumerate(elements, 1)
        if element.text and element.text.strip()
    ]
    traces = tuple(
        _parse_trace(element.text, columns, source, _trace_name(element, number))
        for number, element in kept
    )
    if not traces:
        raise DataError("no trace in InkML", source)
    latex = None
    for child in root.iterfind(f"{ns}annotation"):
        if child.get("type") == "truth":
            latex = (child.text or "").strip() or None
            break
    return Ink(
        traces=traces,
        latex=latex,
        source=source,
        symbols=_symbols(root, ns, [element for _, element in kept]),
    )


def _symbols(root: ET.Element, ns: str, traces: Sequence[ET.Element]) -> tuple[Symbol, ...]:
    """Leaf trace groups with a truth label, as indices into ``traces`` (matched by trace id)."""
    index = {element.get("id"): i for i, element in enumerate(traces) if element.get("id")}
    symbols = []
    for group in root.iter(f"{ns}traceGroup"):
        label = next(
            (
                (note.text or "").strip()
                for note in group.iterfind(f"{ns}annotation")
                if note.get("type") == "truth"
            ),
            "",
        )
        refs = [view.get("traceDataRef") for view in group.iterfind(f"{ns}traceView")]
        if label and refs and all(ref in index for ref in refs):
            symbols.append((label, tuple(index[ref] for ref in refs)))
    return tuple(symbols)


@dataclass(frozen=True)
class RenderConfig:
    """How ink becomes pixels. Sizes in output pixels.

    ``symbol_height``: the height a typical symbol gets, as measured by
    :func:`hmer.data.preprocess.glyph_height` (so preprocessing leaves renders alone);
    ``stroke_width``: pen width (px, rounded);
    ``margin``: blank border on each side; ``max_height`` / ``max_width`` / ``max_area``: limits
    on the output, met by shrinking the whole expression (glyphs then get smaller).
    """

    symbol_height: float = 32.0
    stroke_width: float = 2.0
    margin: int = 4
    max_height: int = 256
    max_width: int = 1024
    max_area: int = 256 * 1024


def _trace_extents(points: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """``(T, 2)`` width and height of each trace of ``points`` (traces begin at ``starts``)."""
    return np.maximum.reduceat(points, starts) - np.minimum.reduceat(points, starts)


def _stack(traces: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """All points ``(N, 2)`` float64 and the index where each non-empty trace starts."""
    traces = [np.asarray(t, dtype=np.float64).reshape(-1, 2) for t in traces]
    traces = [t for t in traces if len(t)]
    if not traces:
        raise DataError("no ink to render")
    starts = np.cumsum([0] + [len(t) for t in traces[:-1]])
    return np.concatenate(traces), starts


def ink_symbol_height(traces: Sequence[np.ndarray]) -> float:
    """Robust height of a typical symbol, in the traces' units, from trace extents alone.

    A trace is usually one symbol or a part of one. Flat or tiny traces (minus signs, fraction
    bars, dots, the crossbar of a ``+``) say little about glyph height, so traces shorter than
    half the median trace height are left out and the median of the rest is the estimate; half
    the median trace width bounds it from below, for ink made of flat strokes only. On CROHME
    train+2016 its ratio to the median digit/capital height of the same expression has median
    0.98 and interquartile range x0.88..x1.14 (see data/README.md); it does not grow with the
    length of the expression.
    """
    return _symbol_height(_trace_extents(*_stack(traces)))


def _symbol_height(extents: np.ndarray) -> float:
    widths, heights = extents[:, 0], extents[:, 1]
    tall = heights[heights >= 0.5 * np.median(heights)]
    return float(max(np.median(tall), 0.5 * np.median(widths)))


#: Relative glyph-height error of a first render that is not worth drawing again.
_REDRAW_TOLERANCE = 0.02


def _dilation(stroke_width: float) -> int:
    """Kernel size thickening a 1 px anti-aliased line to about ``stroke_width`` px."""
    return max(1, round(stroke_width) - 1)


@functools.lru_cache(maxsize=8)
def _gain_table(stroke_width: float) -> np.ndarray:
    """Intensity gain (a LUT) giving cv2's 1 px anti-aliased lines a solid 255 core.

    Measured mean widths: with gain 3, kernel k gives k + 1 px (within 0.4 px); below 2 px the
    gain falls to 1 (a bare 1 px line measures 1.2 px).
    """
    gain = 1.0 + 2.0 * min(max(stroke_width - 1.0, 0.0), 1.0)
    return np.clip(np.arange(256) * gain, 0, 255).astype(np.uint8)


def _draw(
    points: np.ndarray, starts: np.ndarray, scale: float, cfg: RenderConfig
) -> tuple[np.ndarray, bool]:
    """Strokes at ``scale`` px per unit (shrunk to the limits): (image, whether it was shrunk)."""
    kernel = _dilation(cfg.stroke_width)
    pad = 2 * cfg.margin + kernel + 1
    low = points.min(axis=0)
    extent = points.max(axis=0) - low
    fitted = fit_scale(*extent, pad, scale, cfg.max_height, cfg.max_width, cfg.max_area)
    height = math.ceil(extent[1] * fitted + pad)
    width = math.ceil(extent[0] * fitted + pad)
    offset = cfg.margin + (kernel + 1) / 2
    fixed = np.round(((points - low) * fitted + offset) * (1 << _SHIFT)).astype(np.int32)
    dots = (_trace_extents(fixed, starts) == 0).all(axis=1)
    image = np.zeros((height, width), dtype=np.uint8)
    curves = np.split(fixed.reshape(-1, 1, 2), starts[1:])
    cv2.polylines(
        image,
        [c for c, dot in zip(curves, dots, strict=True) if not dot],
        False,
        255,
        1,
        cv2.LINE_AA,
        _SHIFT,
    )
    for curve in (c for c, dot in zip(curves, dots, strict=True) if dot):
        # cv2 draws a zero-length segment almost invisibly: a dot gets a 1 px disc instead.
        center = (int(curve[0, 0, 0]), int(curve[0, 0, 1]))
        cv2.circle(image, center, 1 << (_SHIFT - 1), 255, -1, cv2.LINE_AA, _SHIFT)
    if kernel > 1:
        image = cv2.dilate(image, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (kernel, kernel)))
    return cv2.LUT(image, _gain_table(cfg.stroke_width)), fitted < scale * (1 - 1e-6)


def render_traces(traces: Sequence[np.ndarray], cfg: RenderConfig = RenderConfig()) -> np.ndarray:
    """Draw strokes anti-aliased: uint8 ``(H, W)``, ink 255 on 0, ``cfg.margin`` around the ink.

    Scale: a first drawing uses :func:`ink_symbol_height`; it is redrawn if
    :func:`hmer.data.preprocess.glyph_height` of that drawing misses ``cfg.symbol_height`` by more
    than 2%, so a render is already what :func:`hmer.data.preprocess.preprocess` would make of it.
    Either way the output is shrunk if needed to fit ``max_height``/``max_width``/``max_area``,
    margins included. Strokes are drawn 1 px wide with cv2's anti-aliasing, thickened by a
    grayscale dilation and given a solid core by an intensity gain: the mean drawn width is
    within about half a pixel of ``round(stroke_width)``, at a quarter of the cost of cv2's thick
    anti-aliased lines or supersampling.

    Raises:
        DataError: no points to draw, or limits too small for the margins.
    """
    points, starts = _stack(traces)
    pad = 2 * cfg.margin + _dilation(cfg.stroke_width) + 1
    if min(cfg.max_height, cfg.max_width) <= pad or cfg.max_area <= pad * pad:
        raise DataError(f"render limits leave no room for ink: {cfg}")
    unit = _symbol_height(_trace_extents(points, starts))
    scale = cfg.symbol_height / unit if unit > 0 else 1.0
    if not math.isfinite(scale):  # glyphs a few float64 steps tall: noise, not writing
        raise DataError(f"ink too small to draw: symbols {unit:g} units tall")
    image, shrunk = _draw(points, starts, scale, cfg)
    glyph = glyph_height(image)
    if not shrunk and glyph > 0 and abs(glyph / cfg.symbol_height - 1) > _REDRAW_TOLERANCE:
        image, _ = _draw(points, starts, scale * cfg.symbol_height / glyph, cfg)
    return image


def load_image(path: str | Path, render: RenderConfig | None = None) -> np.ndarray:
    """Read an input file as pixels: a picture as stored (an array of
    :func:`hmer.data.preprocess.decode_image`), an ``.inkml`` file rendered with ``render``
    (default ``RenderConfig()``; uint8, ink 255 on 0). Feed the result to
    :func:`hmer.data.preprocess.preprocess`. Memory is bounded whatever the file: its size by
    :data:`MAX_IMAGE_BYTES` / :data:`MAX_INKML_BYTES`, its pixels by the decoder's budget.

    Raises:
        DataError: missing, unreadable, too large or undecodable file (the message names it).
    """
    path = Path(path)
    if path.suffix.lower() == ".inkml":
        return render_traces(parse_inkml(path).traces, render or RenderConfig())
    return decode_image(read_file(path, MAX_IMAGE_BYTES), path)
