"""``hmer data synth``: write a synthetic dataset (look at it with ``hmer data preview``).

:func:`run_synth` runs the command that ``hmer/cli/data.py`` registers.
"""

from __future__ import annotations

import argparse
import time

from hmer.data.datasets import write_bttr_layout
from hmer.data.synth.generate import generate_images
from hmer.data.synth.grammar import load_grammar
from hmer.data.synth.recombine import Recombiner, read_corpus


def run_synth(args: argparse.Namespace) -> int:
    grammar = load_grammar(args.grammar)
    corpus = None
    if args.corpus is not None:
        corpus = Recombiner(read_corpus(args.corpus), grammar.size["max_tokens"])
        print(f"recombining {len(corpus.formulas)} formulas ({corpus.skipped} unusable skipped)")
    began = time.perf_counter()
    items = generate_images(args.n, args.seed, args.workers, grammar=grammar, corpus=corpus)
    write_bttr_layout(items, args.out, args.split)
    seconds = time.perf_counter() - began
    rate = args.n / seconds if seconds > 0 else float("inf")
    print(
        f"wrote {args.n} expressions to {args.out / args.split} in {seconds:.1f} s ({rate:.0f}/s)"
    )
    return 0
