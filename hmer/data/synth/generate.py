"""Synthetic handwritten expressions: sampled formulas written by sampled hands, as online ink.

Item ``i`` of seed ``s`` depends on ``(s, i)`` alone (its random stream is seeded with both), so
output is identical for any number of workers and any chunking, and ``start`` continues a run.
Traces are like CROHME InkML: a tuple of (N, 2) float64 ``x, y`` arrays, ``y`` downward, in
units where the text size (1 em) is ``UNITS_PER_EM``; truth is canonical tokens.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from hmer.data.synth.glyphs import CAP_HEIGHT, Hand, Pen
from hmer.data.synth.grammar import Grammar, load_grammar
from hmer.data.synth.layout import layout
from hmer.data.synth.recombine import Recombiner
from hmer.data.synth.tree import parse
from hmer.errors import ConfigError

if TYPE_CHECKING:
    from hmer.data.inkml import RenderConfig

UNITS_PER_EM = 100.0
_CHUNK = 32  # items per task sent to a worker


@dataclass(frozen=True)
class Drawing:
    """One written expression: traces, the token each trace draws, and the hand that wrote it."""

    tokens: list[str]
    traces: tuple[np.ndarray, ...]
    owners: tuple[int, ...]  # owners[k]: position in ``tokens`` of the token trace k draws
    hand: Hand

    def boxes(self) -> dict[int, tuple[float, float, float, float]]:
        """Ink box ``(x0, y0, x1, y1)`` of each drawn token, keyed by its position in ``tokens``."""
        boxes: dict[int, tuple[float, float, float, float]] = {}
        for owner, trace in zip(self.owners, self.traces, strict=True):
            (x0, y0), (x1, y1) = trace.min(0), trace.max(0)
            if owner in boxes:
                a = boxes[owner]
                x0, y0, x1, y1 = min(a[0], x0), min(a[1], y0), max(a[2], x1), max(a[3], y1)
            boxes[owner] = (float(x0), float(y0), float(x1), float(y1))
        return boxes


def draw(tokens: Sequence[str], rng: np.random.Generator, hand: Hand | None = None) -> Drawing:
    """Write canonical ``tokens`` by ``hand`` (sampled from ``rng`` when None).

    Raises TreeError for a sequence that does not parse, GlyphError for an undrawable token.
    """
    tokens = list(tokens)
    hand = Hand.sample(rng) if hand is None else hand
    pen = Pen(hand, rng)
    ink = layout(parse(tokens), pen)
    # Whole-expression habits: a baseline that drifts slowly up and down, and a slight rotation.
    phase = rng.uniform(0.0, 2.0 * np.pi)
    cos, sin = math.cos(hand.rotation), math.sin(hand.rotation)
    turn = UNITS_PER_EM * np.array([[cos, sin], [-sin, cos]])
    shapes = []
    for _, shape in ink.parts:
        x, y = shape.points[:, 0], shape.points[:, 1]
        y = y + hand.wobble * np.sin(2.0 * np.pi * x / hand.wobble_period + phase)
        shapes.append(dataclasses.replace(shape, points=np.stack([x, y], axis=1)))
    out = [stroke @ turn for stroke in pen.ink(shapes)]
    owners = tuple(index for index, shape in ink.parts for _ in shape.sizes)
    return Drawing(tokens, tuple(out), owners, hand)


class Synthesizer:
    """Makes item ``index`` of a seed: tokens (grammar or recombination), then a drawing."""

    def __init__(self, seed: int, grammar: Grammar | None = None, corpus: Recombiner | None = None):
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")
        self.seed = int(seed)
        self.grammar = load_grammar() if grammar is None else grammar
        self.corpus = corpus

    def name(self, index: int) -> str:
        return f"synth_{self.seed}_{index:07d}"

    def tokens(self, rng: np.random.Generator) -> list[str]:
        cfg = self.grammar.config["recombine"]
        if self.corpus is not None and rng.random() < cfg["share"]:
            return self.corpus.sample(rng, self.grammar, cfg["max_swaps"], cfg["p_grammar_donor"])
        return self.grammar.sample(rng)

    def drawing(self, index: int) -> Drawing:
        rng = np.random.default_rng([self.seed, index])
        return draw(self.tokens(rng), rng)


def generate(
    n: int,
    seed: int = 0,
    workers: int = 1,
    *,
    grammar: Grammar | None = None,
    corpus: Recombiner | None = None,
    start: int = 0,
) -> list[tuple[str, tuple[np.ndarray, ...], list[str]]]:
    """``n`` synthetic expressions as ``(name, traces, tokens)``, items ``start .. start + n - 1``.

    ``corpus``: formulas to recombine (a share of items, ``recombine.share`` in the grammar).
    """
    return list(_run(_traces_task, n, seed, workers, grammar, corpus, start, None))


def generate_images(
    n: int,
    seed: int = 0,
    workers: int = 1,
    *,
    render: RenderConfig | None = None,
    grammar: Grammar | None = None,
    corpus: Recombiner | None = None,
    start: int = 0,
) -> Iterator[tuple[str, np.ndarray, list[str]]]:
    """Like :func:`generate`, rendered (uint8 ``(H, W)``, ink 255 on 0) by the CROHME renderer.

    Each writer's pen width scales ``render.stroke_width``. Yields items in order as workers
    finish them, so a large ``n`` streams to disk without being held in memory.
    """
    # Start-up: the renderer pulls in OpenCV; ``hmer --help`` loads this package (synth command).
    from hmer.data.inkml import RenderConfig

    return _run(_image_task, n, seed, workers, grammar, corpus, start, render or RenderConfig())


def render_drawing(drawing: Drawing, render: RenderConfig | None = None) -> np.ndarray:
    """A drawing as an image (uint8 ``(H, W)``, ink 255 on 0) by the CROHME renderer.

    The writer's pen width scales ``render.stroke_width``. The renderer sizes ink by a trace-height
    estimate calibrated on real handwriting, whose letters are relatively taller than this font's;
    the target is rescaled so capitals and digits get ``render.symbol_height`` pixels, as on CROHME.
    """
    # Start-up: OpenCV, as in generate_images.
    from hmer.data.inkml import RenderConfig, ink_symbol_height, render_traces

    render = render or RenderConfig()
    estimate = ink_symbol_height(drawing.traces) / (CAP_HEIGHT * UNITS_PER_EM)
    config = dataclasses.replace(
        render,
        stroke_width=render.stroke_width * drawing.hand.pen,
        symbol_height=render.symbol_height * estimate,
    )
    return render_traces(drawing.traces, config)


# --- workers -------------------------------------------------------------------------------------

_STATE: dict[str, object] = {}


def _init(synthesizer: Synthesizer, render: RenderConfig | None) -> None:
    _STATE["synthesizer"] = synthesizer
    _STATE["render"] = render


def _traces_task(span: tuple[int, int]) -> list[tuple[str, tuple[np.ndarray, ...], list[str]]]:
    synth = _STATE["synthesizer"]
    assert isinstance(synth, Synthesizer)
    out = []
    for index in range(*span):
        drawing = synth.drawing(index)
        out.append((synth.name(index), drawing.traces, drawing.tokens))
    return out


def _image_task(span: tuple[int, int]) -> list[tuple[str, np.ndarray, list[str]]]:
    synth, render = _STATE["synthesizer"], _STATE["render"]
    assert isinstance(synth, Synthesizer)
    out = []
    for index in range(*span):
        drawing = synth.drawing(index)
        out.append((synth.name(index), render_drawing(drawing, render), drawing.tokens))
    return out


def _run(
    task: Callable[[tuple[int, int]], list],
    n: int,
    seed: int,
    workers: int,
    grammar: Grammar | None,
    corpus: Recombiner | None,
    start: int,
    render: RenderConfig | None,
) -> Iterator:
    for field, value, low in (("n", n, 0), ("workers", workers, 1), ("start", start, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ConfigError(f"{field} must be an integer >= {low}, got {value!r}")
    synthesizer = Synthesizer(seed, grammar, corpus)
    spans = [(i, min(i + _CHUNK, start + n)) for i in range(start, start + n, _CHUNK)]
    if workers == 1 or len(spans) <= 1:
        _init(synthesizer, render)
        return (item for span in spans for item in task(span))
    return _pooled(task, spans, workers, synthesizer, render)


def _pooled(
    task: Callable[[tuple[int, int]], list],
    spans: list[tuple[int, int]],
    workers: int,
    synthesizer: Synthesizer,
    render: RenderConfig | None,
) -> Iterator:
    with multiprocessing.get_context().Pool(
        min(workers, len(spans)), initializer=_init, initargs=(synthesizer, render)
    ) as pool:
        for chunk in pool.imap(task, spans):
            yield from chunk
