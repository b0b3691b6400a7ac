"""A small math layout engine: a tree of symbols -> positioned pen strokes.

TeX-like but looser, as handwriting is: rows share a baseline; scripts shrink and sit above-right or
below-right of their base at heights taken from the base's ink; fraction bars sit on the math axis
with the numerator above and the denominator below; radical signs and bracket pairs are sized to
what they enclose; ``\\sum``/``\\prod``/``\\lim`` take their limits above and below. Sizes come from
the ink each glyph actually got (after the writer's variation), so nothing collides.

Units are em, ``y`` down, baseline ``y = 0``; a laid-out piece starts at ``x = 0``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hmer.data.synth.glyphs import AXIS, DELIMITERS, FUNCTIONS, X_HEIGHT, Pen, Shape
from hmer.data.synth.tree import (
    BIG_OPERATORS,
    LIMIT_OPERATORS,
    Frac,
    Group,
    Node,
    Row,
    Scripts,
    Sqrt,
    Sym,
)

BINARY = frozenset({"+", "-", "\\times", "\\div", "\\pm", "\\mp", "\\cdot"})
RELATIONS = frozenset(
    {"=", "<", ">", "\\leq", "\\geq", "\\neq", "\\rightarrow", "\\in", "\\approx", "\\equiv"}
)
_OPENING = {"(": ")", "[": "]", "\\{": "\\}"}
_MIN_SIZE = 0.35  # scripts of scripts stop shrinking here


@dataclass(frozen=True)
class Ink:
    """A laid-out piece: glyph shapes tagged with the position of their token, and extents."""

    parts: tuple[tuple[int, Shape], ...]
    width: float  # the ink spans x in [0, width]
    top: float  # y of its highest ink (negative: above the baseline)
    bottom: float

    def moved(self, dx: float, dy: float) -> Ink:
        parts = tuple((i, shape.moved(dx, dy)) for i, shape in self.parts)
        return Ink(parts, self.width, self.top + dy, self.bottom + dy)

    @classmethod
    def of_shape(cls, index: int, shape: Shape) -> Ink:
        shape = shape.moved(-shape.left, 0.0)
        return cls(((index, shape),), shape.right, shape.top, shape.bottom)


_EMPTY = Ink((), 0.0, 0.0, 0.0)


def _join(pieces: list[tuple[Ink, float, float]]) -> Ink:
    """Pieces placed at (dx, dy), merged into one; the result is shifted to start at x = 0."""
    moved = [ink.moved(dx, dy) for ink, dx, dy in pieces if ink.parts]
    if not moved:
        return _EMPTY
    left = min(dx for ink, dx, _ in pieces if ink.parts)
    right = max(ink.width + dx for ink, dx, _ in pieces if ink.parts)
    parts = tuple(p for ink in moved for p in ink.parts)
    joined = Ink(parts, right - left, min(i.top for i in moved), max(i.bottom for i in moved))
    return joined.moved(-left, 0.0) if left else joined


def layout(tree: Row, pen: Pen, size: float = 1.0) -> Ink:
    """Lay out a whole expression with ``pen``'s hand; ``size`` is the text size in em."""
    return _Layout(pen).row(tree, size)


class _Layout:
    def __init__(self, pen: Pen):
        self.pen = pen
        self.hand = pen.hand

    def node(self, node: Node, size: float) -> Ink:
        if isinstance(node, Sym):
            if node.token in BIG_OPERATORS:
                return Ink.of_shape(node.index, self.pen.big_operator(node.token, size))
            return Ink.of_shape(node.index, self.pen.symbol(node.token, size))
        if isinstance(node, Group):
            return self.row(node.body, size)
        if isinstance(node, Frac):
            return self.frac(node, size)
        if isinstance(node, Sqrt):
            return self.sqrt(node, size)
        return self.scripts(node, size, None)

    # -- rows and brackets ------------------------------------------------------------------------

    def row(self, row: Row, size: float) -> Ink:
        items = row.items
        brackets = [_bracket(item) for item in items]
        # delimiters wait until the content they enclose is laid out
        inks: list[Ink | None] = [
            None if b is not None else self.node(item, size)
            for item, b in zip(items, brackets, strict=True)
        ]
        for i, span in _bracket_spans(brackets, inks, size).items():
            item, token = items[i], brackets[i]
            base = Ink.of_shape(
                item.index if isinstance(item, Sym) else item.base.index,  # type: ignore[union-attr]
                self.pen.delimiter(token, span[0], span[1], size),
            )
            inks[i] = self.scripts(item, size, base) if isinstance(item, Scripts) else base
        pieces: list[tuple[Ink, float, float]] = []
        x = 0.0
        for k, ink in enumerate(inks):
            assert ink is not None
            if k:
                x += self.space(items[k - 1], items[k], size)
            pieces.append((ink, x, 0.0))
            x += ink.width
        return _join(pieces)

    def space(self, left: Node, right: Node, size: float) -> float:
        """Gap between neighbours: wide around operators and relations, tight before ``!`` ``,``."""
        hand = self.hand
        a, b = _token(left), _token(right)
        gap = hand.gap
        if a in BINARY or b in BINARY or a in RELATIONS or b in RELATIONS:
            gap = hand.op_gap * (1.3 if a in RELATIONS or b in RELATIONS else 1.0)
        elif a in FUNCTIONS:  # "sin x", not "sinx"
            gap = max(hand.gap, 0.6 * hand.op_gap)
        elif b in (",", "!", "."):
            gap = 0.6 * hand.gap
        elif a == ",":
            gap = hand.op_gap
        noise = np.exp(self.pen.rng.normal(0.0, hand.gap_jitter))
        return gap * size * noise

    # -- scripts and operators --------------------------------------------------------------------

    def scripts(self, node: Scripts, size: float, base: Ink | None) -> Ink:
        small = max(size * self.hand.script_scale, _MIN_SIZE)
        if base is None:
            if isinstance(node.base, Sym) and node.base.token in LIMIT_OPERATORS:
                return self.limits(node, size, small)
            base = _EMPTY if node.base is None else self.node(node.base, size)
        sub = None if node.sub is None else self.row(node.sub, small)
        sup = None if node.sup is None else self.row(node.sup, small)
        if base.parts:
            top, bottom = base.top, base.bottom
        else:  # a script opening a row hangs off an invisible x-height box
            top, bottom = -X_HEIGHT * size, 0.0
        is_integral = isinstance(node.base, Sym) and node.base.token == "\\int"
        rise, drop = (0.2, 0.8) if is_integral else (self.hand.script_rise, self.hand.script_drop)
        gap = self.hand.script_gap * size
        pieces = [(base, 0.0, 0.0)]
        # a descender (y, a fraction's denominator) does not lower the superscript
        sup_bottom = top + rise * (max(min(bottom, 0.0), top + 0.3 * size) - top)
        if sup is not None:
            pieces.append((sup, base.width + gap, sup_bottom - sup.bottom))
        if sub is not None:
            # nor does it push the subscript far down: it hangs from the base's body
            sub_top = top + drop * (min(bottom, 0.1 * size) - top)
            if sup is not None:  # keep the two scripts apart
                sub_top = max(sub_top, sup_bottom + 0.1 * size)
            # an integral's lower end leans left, and so does the subscript written beside it
            tuck = 0.3 * base.width if is_integral else 0.0
            pieces.append((sub, base.width + 0.5 * gap - tuck, sub_top - sub.top))
        return _join(pieces)

    def limits(self, node: Scripts, size: float, small: float) -> Ink:
        """``\\sum``/``\\prod``/``\\lim`` with limits centred above and below."""
        op = node.base
        assert isinstance(op, Sym)
        ink = self.node(op, size)
        gap = 0.1 * size
        pieces = [(ink, 0.0, 0.0)]
        for script, above in ((node.sup, True), (node.sub, False)):
            if script is None:
                continue
            lim = self.row(script, small)
            dy = ink.top - gap - lim.bottom if above else ink.bottom + gap - lim.top
            pieces.append((lim, 0.0, dy))
        width = max(p[0].width for p in pieces)
        jitter = self.pen.rng.normal(0.0, 0.04, len(pieces)) * size
        return _join(
            [
                (p, 0.5 * (width - p.width) + j, dy)
                for (p, _, dy), j in zip(pieces, jitter, strict=True)
            ]
        )

    def frac(self, node: Frac, size: float) -> Ink:
        inner = max(size * self.hand.frac_scale, _MIN_SIZE)
        num, den = self.row(node.num, inner), self.row(node.den, inner)
        overhang = self.pen.rng.uniform(0.08, 0.2, 2) * size
        width = max(num.width, den.width) + overhang.sum()
        bar = Ink.of_shape(node.index, self.pen.rule(width, size))
        bar = bar.moved(0.0, -AXIS * size - 0.5 * (bar.top + bar.bottom))
        gap = self.hand.frac_gap * size
        shift = self.pen.rng.normal(0.0, 0.03, 2) * size
        return _join(
            [
                (bar, 0.0, 0.0),
                (num, 0.5 * (width - num.width) + shift[0], bar.top - gap - num.bottom),
                (den, 0.5 * (width - den.width) + shift[1], bar.bottom + gap - den.top),
            ]
        )

    def sqrt(self, node: Sqrt, size: float) -> Ink:
        body = self.row(node.body, size)
        if not body.parts:
            body = Ink((), 0.4 * size, -X_HEIGHT * size, 0.0)
        top = body.top - self.hand.frac_gap * size
        bottom = max(body.bottom, 0.0) + 0.05 * size
        sign, inner = self.pen.radical(body.width, top, bottom, size)
        pieces = [(Ink.of_shape(node.index, sign), 0.0, 0.0), (body, inner, 0.0)]
        if node.degree is not None:
            degree = self.row(node.degree, max(0.55 * size, _MIN_SIZE))
            # the index sits in the crook of the sign, above the little tick
            tick_y = bottom - 0.5 * (bottom - top)
            pieces.append(
                (degree, 0.45 * inner - degree.width, tick_y - 0.05 * size - degree.bottom)
            )
        return _join(pieces)


def _token(node: Node) -> str | None:
    while isinstance(node, Scripts):
        node = node.base  # type: ignore[assignment]
    return node.token if isinstance(node, Sym) else None


def _bracket(node: Node) -> str | None:
    """The delimiter a row item is (or carries as its script base), else None."""
    if isinstance(node, Scripts) and isinstance(node.base, Sym):
        node = node.base
    if isinstance(node, Sym) and node.token in DELIMITERS:
        return node.token
    return None


def _bracket_spans(
    brackets: list[str | None], inks: list[Ink | None], size: float
) -> dict[int, tuple[float, float]]:
    """The (top, bottom) each delimiter of a row must span: matched pairs enclose their content.

    Pairs close innermost first, so an outer pair also encloses the inner pair's delimiters.
    """
    spans: dict[int, tuple[float, float]] = {}
    stack: list[int] = []
    margin = 0.08 * size
    for i, token in enumerate(brackets):
        if token is None:
            continue
        opens = token in _OPENING or (token == "|" and not (stack and brackets[stack[-1]] == "|"))
        if opens:
            stack.append(i)
            continue
        openers = [k for k in stack if _OPENING.get(brackets[k], "|") == token]
        if not openers:  # a closer without an opener keeps its natural size
            continue
        j = openers[-1]
        del stack[stack.index(j) :]  # unmatched openers inside keep their natural size too
        top, bottom = -0.75 * size, 0.15 * size
        for k in range(j + 1, i):
            ink = inks[k]
            if ink is not None and ink.parts:
                top, bottom = min(top, ink.top - margin), max(bottom, ink.bottom + margin)
            elif k in spans:
                top, bottom = min(top, spans[k][0]), max(bottom, spans[k][1])
        spans[i] = spans[j] = (top, bottom)
    for i, token in enumerate(brackets):  # unmatched delimiters keep their natural size
        if token is not None and i not in spans:
            spans[i] = (0.0, 0.0)
    return spans
