"""Synthetic data speed: expressions per second, sampling only, as ink, and as images.

.venv/bin/python benchmarks/bench_synth.py [--n 600] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from hmer.data.synth import generate, generate_images, load_grammar


def rate(label: str, n: int, run) -> None:
    began = time.perf_counter()
    run()
    seconds = time.perf_counter() - began
    print(f"{label:<44} {n / seconds:8.0f} expressions/s  ({n} in {seconds:.2f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=600)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    n, workers = args.n, args.workers
    grammar = load_grammar()
    generate(8, seed=0)  # load the fonts once, outside the timings

    rng = np.random.default_rng(0)
    rate(
        "grammar sampling (tokens only)",
        10 * n,
        lambda: [grammar.sample(rng) for _ in range(10 * n)],
    )
    rate("ink, 1 process", n, lambda: generate(n, seed=1))
    rate(f"ink, {workers} processes", n, lambda: generate(n, seed=1, workers=workers))
    rate("images, 1 process", n, lambda: list(generate_images(n, seed=1)))
    rate(
        f"images, {workers} processes", n, lambda: list(generate_images(n, seed=1, workers=workers))
    )
    lengths = [len(tokens) for _, _, tokens in generate(n, seed=2)]
    print(
        f"tokens per expression: median {np.median(lengths):.0f}, 90th percentile "
        f"{np.percentile(lengths, 90):.0f}, max {max(lengths)}"
    )


if __name__ == "__main__":
    main()
