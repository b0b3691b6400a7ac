"""Pen strokes for every symbol the generator emits, written by a sampled hand.

Units are em. ``y`` grows downward and the baseline is ``y = 0``, so ink above it has negative
``y``. Cap height is 0.7 em, x-height about 0.47 em, and the math axis (the centre of ``+``, ``-``
and of fraction bars) lies ``AXIS`` = 0.3 em above the baseline.

Letters, digits, Greek and plain punctuation come from the Hershey stroke fonts (the
``hershey-fonts`` package, imported lazily: only synthetic data needs it). Math symbols that
Hershey lacks, or draws with doubled lines, are composed here as a writer would draw them
(``\\sum`` as one zig-zag, ``\\infty`` as one loop, arrows from lines). Stretchy symbols
(delimiters, radical signs, fraction bars, integral signs) are drawn to the size the layout asks
for.
"""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hmer.errors import HmerError

AXIS = 0.3  # height of the math axis above the baseline, em
X_HEIGHT = 0.47
CAP_HEIGHT = 0.7  # height of capitals and digits
_UNIT = CAP_HEIGHT / 21  # Hershey: cap line -12, base line 9, so 21 units are the cap height
_BASE = 9

#: Tokens drawn as their letters (upright, print hand), like ``\sin`` -> s i n.
FUNCTIONS = frozenset(
    {"\\sin", "\\cos", "\\tan", "\\cot", "\\sec", "\\csc", "\\log", "\\ln", "\\exp", "\\lim"}
    | {"\\max", "\\min", "\\sinh", "\\cosh", "\\tanh", "\\arcsin", "\\arccos", "\\arctan"}
)
#: Greek tokens and their key in the Hershey ``greeks`` font (``\theta`` is composed instead).
_GREEK_NAMES = (
    "alpha beta gamma delta epsilon zeta eta iota kappa lambda mu nu xi pi rho sigma tau upsilon "
    "phi chi psi omega Gamma Delta Theta Lambda Xi Pi Sigma Upsilon Phi Psi Omega"
)
_GREEK = dict(
    zip(["\\" + n for n in _GREEK_NAMES.split()], "abcdefgijklmnpqrstuvwxCDHKNPRTUWX", strict=True)
)
_PUNCTUATION = frozenset("+-=<>()[]|/,.!;:")
#: Delimiters the layout stretches to the height of what they enclose.
DELIMITERS = frozenset({"(", ")", "[", "]", "\\{", "\\}", "|"})
#: Structural tokens: they shape the layout but leave no ink of their own.
STRUCTURAL = frozenset({"^", "_", "{", "}"})


class GlyphError(HmerError):
    """A token the synthetic pen cannot draw."""


@dataclass(frozen=True)
class Shape:
    """Positioned outline strokes of one glyph, packed, with their ink extents (em).

    ``points`` (M, 2) holds the strokes one after another, ``sizes`` their point counts; ``size``
    is the glyph's text size, which sets its sample spacing and stroke noise when it is inked.
    """

    points: np.ndarray
    sizes: tuple[int, ...]
    size: float
    left: float
    right: float
    top: float
    bottom: float

    @classmethod
    def of(cls, points: np.ndarray, sizes: tuple[int, ...], size: float) -> Shape:
        (left, top), (right, bottom) = points.min(0), points.max(0)
        return cls(points, sizes, size, float(left), float(right), float(top), float(bottom))

    def moved(self, dx: float, dy: float) -> Shape:
        return Shape(
            self.points + np.array([dx, dy]),
            self.sizes,
            self.size,
            self.left + dx,
            self.right + dx,
            self.top + dy,
            self.bottom + dy,
        )


# --- symbol outlines (em, baseline y = 0, y down) -------------------------------------------------


@functools.cache
def _hershey(font: str) -> dict[str, tuple[np.ndarray, ...]]:
    """All glyphs of one built-in Hershey font, converted to em and lightly smoothed."""
    try:
        from HersheyFonts import HersheyFonts
    except ImportError as error:  # not installed where only real data is used
        raise HmerError(
            "synthetic handwriting needs the stroke font package: pip install hershey-fonts"
        ) from error
    fonts = HersheyFonts()
    fonts.load_default_font(font)
    glyphs = {}
    for char, glyph in fonts.all_glyphs.items():
        strokes = [np.array(s, dtype=np.float64) for s in glyph.strokes if len(s)]
        for s in strokes:
            s[:, 1] -= _BASE
            s *= _UNIT
        glyphs[char] = tuple(_chaikin(s) for s in strokes)
    return glyphs


def _chaikin(points: np.ndarray) -> np.ndarray:
    """One corner-cutting pass: rounds the polygonal Hershey curves the way a moving pen does."""
    if len(points) < 3:
        return points
    a, b = points[:-1], points[1:]
    cut = np.empty((2 * len(a), 2))
    cut[0::2] = 0.75 * a + 0.25 * b
    cut[1::2] = 0.25 * a + 0.75 * b
    return np.concatenate([points[:1], cut[1:-1], points[-1:]])


def _polyline(*points: tuple[float, float], smooth: int = 0) -> np.ndarray:
    line = np.array(points, dtype=np.float64)
    for _ in range(smooth):
        line = _chaikin(line)
    return line


def _arc(cx: float, cy: float, rx: float, ry: float, start: float, stop: float) -> np.ndarray:
    """Points of an elliptic arc; angles in degrees, 0 = right, 90 = down (y grows downward)."""
    t = np.radians(np.linspace(start, stop, max(8, int(abs(stop - start) / 12))))
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def _dot(x: float, y: float) -> np.ndarray:
    return _arc(x, y, 0.022, 0.022, 0, 360)


@functools.cache
def _composed() -> dict[str, tuple[np.ndarray, ...]]:
    """Math symbols drawn as a writer draws them, one or two strokes each."""
    a = -AXIS
    t = np.linspace(0.0, 2 * np.pi, 40)
    lemniscate = np.stack(
        [0.36 + 0.36 * np.cos(t) / (1 + np.sin(t) ** 2), a + 0.3 * np.sin(t) * np.cos(t)], 1
    )
    return {
        "\\times": (
            _polyline((0, a - 0.2), (0.4, a + 0.2)),
            _polyline((0.4, a - 0.2), (0, a + 0.2)),
        ),
        "\\div": (_polyline((0, a), (0.5, a)), _dot(0.25, a - 0.17), _dot(0.25, a + 0.17)),
        "\\pm": (
            _polyline((0.25, a - 0.27), (0.25, a + 0.13)),
            _polyline((0.03, a - 0.07), (0.47, a - 0.07)),
            _polyline((0.0, a + 0.27), (0.5, a + 0.27)),
        ),
        "\\mp": (
            _polyline((0.0, a - 0.27), (0.5, a - 0.27)),
            _polyline((0.25, a - 0.13), (0.25, a + 0.27)),
            _polyline((0.03, a + 0.07), (0.47, a + 0.07)),
        ),
        "\\cdot": (_dot(0.04, a),),
        "\\leq": (
            _polyline((0.5, a - 0.3), (0, a - 0.08), (0.5, a + 0.14)),
            _polyline((0, 0), (0.5, 0)),
        ),
        "\\geq": (
            _polyline((0, a - 0.3), (0.5, a - 0.08), (0, a + 0.14)),
            _polyline((0, 0), (0.5, 0)),
        ),
        "\\neq": (
            _polyline((0, a - 0.1), (0.52, a - 0.1)),
            _polyline((0, a + 0.1), (0.52, a + 0.1)),
            _polyline((0.38, a - 0.32), (0.14, a + 0.32)),
        ),
        "\\rightarrow": (
            _polyline((0, a), (0.8, a)),
            _polyline((0.64, a - 0.12), (0.8, a), (0.64, a + 0.12)),
        ),
        "\\infty": (lemniscate,),
        "\\in": (_arc(0.26, a, 0.24, 0.24, 270, 90), _polyline((0.02, a), (0.42, a))),
        "\\exists": (
            _polyline((0, -0.7), (0.45, -0.7), (0.45, 0), (0, 0)),
            _polyline((0.06, -0.36), (0.45, -0.36)),
        ),
        "\\forall": (
            _polyline((0, -0.7), (0.28, 0), (0.56, -0.7)),
            _polyline((0.12, -0.36), (0.44, -0.36)),
        ),
        "\\theta": (
            _arc(0.2, -0.35, 0.19, 0.35, -90, 270),
            _polyline((0.03, -0.36), (0.37, -0.36)),
        ),
        "\\ldots": (_dot(0.05, -0.03), _dot(0.25, -0.03), _dot(0.45, -0.03)),
        "\\cdots": (_dot(0.05, a), _dot(0.25, a), _dot(0.45, a)),
        "\\prime": (_polyline((0.12, -0.62), (0.0, -0.25)),),
        "\\sum": (
            _polyline((0.62, -0.62), (0.6, -0.7), (0, -0.7), (0.34, -0.35), (0, 0), (0.62, 0)),
        ),
        "\\prod": (
            _polyline((0, -0.7), (0.65, -0.7)),
            _polyline((0.12, -0.7), (0.12, 0)),
            _polyline((0.53, -0.7), (0.53, 0)),
        ),
        "\\int": (
            _polyline(
                (0.5, -0.8),
                (0.43, -0.87),
                (0.34, -0.83),
                (0.29, -0.6),
                (0.21, 0.0),
                (0.15, 0.22),
                (0.06, 0.27),
                (0.0, 0.2),
                smooth=2,
            ),
        ),
        "(": (_arc(0.38, -0.3, 0.38, 0.55, 235, 125),),
        ")": (_arc(-0.1, -0.3, 0.38, 0.55, -55, 55),),
        "[": (_polyline((0.22, -0.83), (0, -0.83), (0, 0.23), (0.22, 0.23)),),
        "]": (_polyline((0, -0.83), (0.22, -0.83), (0.22, 0.23), (0, 0.23)),),
        "\\{": (
            _polyline(
                (0.3, -0.83),
                (0.17, -0.78),
                (0.15, -0.5),
                (0.13, -0.36),
                (0.0, -0.3),
                (0.13, -0.24),
                (0.15, -0.1),
                (0.17, 0.18),
                (0.3, 0.23),
                smooth=2,
            ),
        ),
        "\\}": (
            _polyline(
                (0.0, -0.83),
                (0.13, -0.78),
                (0.15, -0.5),
                (0.17, -0.36),
                (0.3, -0.3),
                (0.17, -0.24),
                (0.15, -0.1),
                (0.13, 0.18),
                (0.0, 0.23),
                smooth=2,
            ),
        ),
        "|": (_polyline((0, -0.83), (0, 0.23)),),
    }


def outline(token: str, cursive: bool = False) -> tuple[np.ndarray, ...]:
    """The undistorted strokes of ``token`` (em, baseline y = 0); ``cursive`` picks the script hand.

    Raises GlyphError for a token that has no drawing (structural tokens included).
    """
    composed = _composed()
    if token in composed:
        return composed[token]
    if token in _GREEK:
        return _hershey("greeks")[_GREEK[token]]
    if len(token) == 1 and token.isascii() and token.isalnum():
        # the script hand's capitals are calligraphic and its digits double-lined: print those
        return _hershey("scripts" if cursive and token.islower() else "futural")[token]
    if token in _PUNCTUATION:
        return _hershey("futural")[token]
    raise GlyphError(f"no pen strokes for token {token!r}")


@functools.cache
def _packed(token: str, cursive: bool) -> tuple[np.ndarray, tuple[int, ...]]:
    strokes = outline(token, cursive)
    return np.concatenate(strokes), tuple(len(stroke) for stroke in strokes)


def can_draw(token: str) -> bool:
    """Whether the pen draws ``token`` (a symbol, a function name, or a stretchy structure)."""
    if token in FUNCTIONS or token in ("\\frac", "\\sqrt"):
        return True
    try:
        outline(token)
    except GlyphError:
        return False
    return True


# --- the writer ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hand:
    """One writer's habits, sampled once per expression. Lengths in em, angles in radians."""

    cursive: float = 0.0  # share of lowercase letters this writer forms in the script hand
    style: int = 0  # seeds which letters those are: a writer forms each letter one way
    slant: float = 0.0  # shear: x += -slant * y, so positive leans right
    width: float = 1.0  # horizontal scale of glyphs
    size_jitter: float = 0.0  # sd of the per-glyph log size change
    angle_jitter: float = 0.0  # sd of the per-glyph rotation
    lift_jitter: float = 0.0  # sd of the per-glyph vertical offset, in units of its size
    gap: float = 0.12  # space between neighbouring glyphs, in units of their size
    gap_jitter: float = 0.0  # relative sd of that space
    op_gap: float = 0.22  # space around binary operators and relations
    tremor: float = 0.0  # amplitude of the smooth stroke wander
    wander: float = 1.2  # wavelength of that wander along the stroke
    script_scale: float = 0.7  # size of scripts and limits relative to their base
    script_gap: float = 0.06  # space between a base and its scripts
    script_rise: float = 0.35  # superscript bottom, as a fraction of the base height from its top
    script_drop: float = 0.55  # subscript top, likewise
    frac_scale: float = 0.9  # size of numerator and denominator relative to the fraction
    frac_gap: float = 0.12  # space between a fraction bar and its numerator/denominator
    big_scale: float = 1.4  # size of \sum, \int, \prod relative to the text
    wobble: float = 0.0  # amplitude of the slow baseline drift across the expression
    wobble_period: float = 6.0
    rotation: float = 0.0  # rotation of the whole expression
    pen: float = 1.0  # pen width, as a factor on the renderer's stroke width
    step: float = 0.035  # distance between ink samples (digitizer density)

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Hand:
        """A random plausible writer."""
        u = rng.uniform
        return cls(
            cursive=0.0 if rng.random() < 0.5 else u(0.2, 1.0),
            style=int(rng.integers(2**31)),
            slant=float(np.clip(rng.normal(0.12, 0.12), -0.15, 0.4)),
            width=u(0.85, 1.2),
            size_jitter=u(0.03, 0.12),
            angle_jitter=u(0.01, 0.06),
            lift_jitter=u(0.0, 0.07),
            gap=u(0.06, 0.3),
            gap_jitter=u(0.1, 0.3),
            op_gap=u(0.1, 0.4),
            tremor=u(0.004, 0.03),
            wander=u(0.8, 2.0),
            script_scale=u(0.55, 0.8),
            script_gap=u(0.02, 0.2),
            script_rise=u(0.05, 0.5),
            script_drop=u(0.45, 0.7),
            frac_scale=u(0.75, 1.0),
            frac_gap=u(0.07, 0.2),
            big_scale=u(1.2, 1.7),
            wobble=u(0.0, 0.08),
            wobble_period=u(3.0, 10.0),
            rotation=float(rng.normal(0.0, 0.025)),
            pen=float(np.clip(np.exp(rng.normal(0.0, 0.25)), 0.7, 1.6)),
            step=u(0.02, 0.05),
        )

    def uses_script(self, token: str) -> bool:
        """Whether this writer forms ``token`` in the script hand (always the same way)."""
        if self.cursive <= 0.0 or not (len(token) == 1 and token.islower()):
            return False
        return zlib.crc32(f"{self.style}:{token}".encode()) / 2**32 < self.cursive


class Pen:
    """Draws symbols in a hand: each call adds this glyph's own size, slant and stroke noise."""

    def __init__(self, hand: Hand, rng: np.random.Generator):
        self.hand = hand
        self.rng = rng

    def _write(
        self,
        outline: tuple[np.ndarray, tuple[int, ...]],
        size: float,
        jitter: bool = True,
        xscale: float = 1.0,
        upright: bool = False,
    ) -> Shape:
        """Scale, slant and turn packed outline strokes as this hand does; ink starts at x = 0.

        ``jitter`` False keeps the glyph's size, angle and height exact (stretchy symbols, which
        must span what the layout measured); ``upright`` also drops the writer's slant and width.
        """
        hand, rng = self.hand, self.rng
        points, sizes = outline
        scale = size * (math.exp(rng.normal(0.0, hand.size_jitter)) if jitter else 1.0)
        angle = rng.normal(0.0, hand.angle_jitter) if jitter else 0.0
        shear = rng.normal(0.0, 0.03) + (0.0 if upright else hand.slant)
        xscale *= 1.0 if upright else hand.width
        if jitter:  # letters come out narrower or wider, not only bigger or smaller
            xscale *= math.exp(rng.normal(0.0, 0.06))
        cos, sin = math.cos(angle), math.sin(angle)
        linear = np.array([[cos, -sin], [sin, cos]]) @ np.array([[xscale, -shear], [0.0, 1.0]])
        lift = rng.normal(0.0, hand.lift_jitter) * size if jitter else 0.0
        shape = Shape.of(points @ (scale * linear).T, sizes, size)
        return shape.moved(-shape.left, lift)

    def symbol(self, token: str, size: float) -> Shape:
        """One symbol (a function name is its letters in upright print)."""
        if token in FUNCTIONS:
            return self.word(token[1:], size)
        return self._write(_packed(token, self.hand.uses_script(token)), size)

    def word(self, letters: str, size: float) -> Shape:
        shapes, x = [], 0.0
        for letter in letters:
            shapes.append(self._write(_packed(letter, False), size).moved(x, 0.0))
            x = shapes[-1].right + max(0.5 * self.hand.gap, 0.08) * size
        points = np.concatenate([shape.points for shape in shapes])
        return Shape.of(points, sum((shape.sizes for shape in shapes), ()), size)

    def delimiter(self, token: str, top: float, bottom: float, size: float) -> Shape:
        """A delimiter spanning ``top``..``bottom`` (em, y down), never below its natural size."""
        points, sizes = _packed(token, False)
        natural = float(np.ptp(points[:, 1])) * size
        stretch = max(1.0, (bottom - top) / natural)
        # Tall delimiters get only a little wider: a writer draws a longer stroke, not a bigger one.
        drawn = self._write(
            (points, sizes), size * stretch, jitter=stretch == 1.0, xscale=stretch**-0.65
        )
        centre = 0.5 * (top + bottom) if stretch > 1.0 else -AXIS * size
        return drawn.moved(0.0, centre - 0.5 * (drawn.top + drawn.bottom))

    def big_operator(self, token: str, size: float) -> Shape:
        """``\\sum``, ``\\prod``, ``\\int``: bigger than the text and centred on the math axis."""
        scale = self.hand.big_scale * (1.15 if token == "\\int" else 1.0)
        drawn = self._write(_packed(token, False), size * scale)
        return drawn.moved(0.0, -AXIS * size - 0.5 * (drawn.top + drawn.bottom))

    def rule(self, width: float, size: float) -> Shape:
        """A fraction bar of ``width`` em, on the baseline of its own shape (y = 0)."""
        length = width / size
        sag = self.rng.normal(0.0, 0.01) * length
        tilt = self.rng.normal(0.0, 0.008) * length
        bar = _polyline((0, -tilt), (0.5 * length, sag), (length, tilt), smooth=2)
        return self._write((bar, (len(bar),)), size, jitter=False, upright=True)

    def radical(self, width: float, top: float, bottom: float, size: float) -> tuple[Shape, float]:
        """A radical sign from ``top`` to ``bottom`` whose bar covers ``width`` em of content.

        Returns the sign, starting at x = 0, and the x where the content starts under the bar.
        """
        height = bottom - top
        tick = min(0.32 + 0.12 * height, 0.7) * size
        v = self.rng.uniform(0.8, 1.2)
        inner = tick + 0.06 * size
        sign = _polyline(
            (0.0, bottom - 0.45 * height * v),
            (0.12 * tick, bottom - 0.52 * height * v),
            (0.45 * tick, bottom),
            (tick, top),
            (inner + width + self.rng.uniform(0.1, 0.25) * size, top),
        )
        shape = self._write((sign / size, (len(sign),)), size, jitter=False, upright=True)
        return shape.moved(0.0, top - shape.top), inner

    def ink(self, shapes: Sequence[Shape]) -> list[np.ndarray]:
        """Final pen strokes of positioned shapes: resampled evenly, like a digitizer's samples,
        and roughened by a smooth wander along each stroke plus a small offset of each stroke.

        Done once for a whole expression, vectorized over all its strokes.
        """
        hand, rng = self.hand, self.rng
        points = np.concatenate([shape.points for shape in shapes])
        sizes = np.array([n for shape in shapes for n in shape.sizes])
        glyph_size = np.repeat([shape.size for shape in shapes], [len(s.sizes) for s in shapes])
        count = len(sizes)
        first = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        # One arc-length axis through all strokes (the jumps between strokes included, never
        # sampled): a single np.interp then resamples every stroke at once.
        cum = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])
        start, length = cum[first], cum[first + sizes - 1] - cum[first]
        samples = np.maximum(2, np.ceil(length / (hand.step * np.maximum(glyph_size, 0.4))) + 1)
        samples = samples.astype(np.int64)
        stroke = np.repeat(np.arange(count), samples)
        offsets = np.concatenate([[0], np.cumsum(samples)[:-1]])
        along = length[stroke] * (np.arange(int(samples.sum())) - offsets[stroke])
        along /= samples[stroke] - 1
        x = np.interp(start[stroke] + along, cum, points[:, 0])
        y = np.interp(start[stroke] + along, cum, points[:, 1])
        phase = rng.uniform(0.0, 2.0 * np.pi, (count, 2))
        freq = rng.uniform(0.7, 1.4, (count, 2))
        shift = rng.normal(0.0, 0.4, (count, 2))
        cycles = along[:, None] / (hand.wander * glyph_size[stroke][:, None])
        wave = np.sin(2.0 * np.pi * freq[stroke] * cycles + phase[stroke]) + shift[stroke]
        out = np.stack([x, y], axis=1) + hand.tremor * glyph_size[stroke][:, None] * wave
        return np.split(out, offsets[1:])
