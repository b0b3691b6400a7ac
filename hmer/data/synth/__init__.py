"""Synthetic handwritten math: expressions from a grammar (or recombined real formulas), laid
out like written math and drawn as pen strokes by randomly sampled writers.

``generate(n, seed, workers)`` gives ``(name, traces, tokens)`` items whose traces go through the
same renderer as CROHME InkML; ``generate_images`` renders them; ``hmer data synth`` writes a
dataset.
"""

from __future__ import annotations

from hmer.data.synth.generate import (
    Drawing,
    Synthesizer,
    draw,
    generate,
    generate_images,
    render_drawing,
)
from hmer.data.synth.glyphs import Hand
from hmer.data.synth.grammar import Grammar, load_grammar
from hmer.data.synth.recombine import Recombiner, read_corpus

__all__ = [
    "Drawing",
    "Grammar",
    "Hand",
    "Recombiner",
    "Synthesizer",
    "draw",
    "generate",
    "generate_images",
    "load_grammar",
    "read_corpus",
    "render_drawing",
]
