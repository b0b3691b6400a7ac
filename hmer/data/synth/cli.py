"""``hmer data synth``: write a synthetic dataset (look at it with ``hmer data preview``).

``register(data_subparsers)`` is called by ``hmer/cli/data.py`` with the subparsers of
``hmer data``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from hmer.data.synth.generate import generate_images
from hmer.data.synth.grammar import load_grammar
from hmer.data.synth.recombine import Recombiner, read_corpus


def register(data_subparsers: argparse._SubParsersAction) -> None:
    synth = data_subparsers.add_parser(
        "synth",
        help="write synthetic handwritten expressions as a BTTR layout (images + caption.txt)",
        description="Sample expressions from a grammar (and recombine real formulas with "
        "--corpus), write them as handwriting, render them like CROHME ink, and write "
        "OUT/SPLIT/<name>.png + OUT/SPLIT/caption.txt. Same seed, same dataset, for any --workers.",
    )
    synth.add_argument("--n", type=int, required=True, help="number of expressions")
    synth.add_argument("--out", type=Path, required=True, help="output folder")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synth.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)"
    )
    synth.add_argument("--split", default="train", help="subfolder name (default train)")
    synth.add_argument("--grammar", type=Path, help="YAML overriding grammar.yaml fields")
    synth.add_argument(
        "--corpus",
        type=Path,
        help="formulas to recombine: a caption file, a BTTR folder or an InkML folder",
    )
    synth.set_defaults(func=run_synth)


def run_synth(args: argparse.Namespace) -> int:
    # Start-up: the dataset writer pulls in OpenCV, which ``hmer --help`` (it registers this
    # command) never needs. The synth modules above are loaded by the package anyway.
    from hmer.data.datasets import write_bttr_layout

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
