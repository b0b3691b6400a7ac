"""Per-core speed of the data path: InkML parse, render, preprocess, augment, to_tensor.

Uses real CROHME InkML when present (``HMER_CROHME`` or ../shared/crohme), else generated ink.
Rates are per core: CPU time of this single process (OpenCV limited to one thread), so they hold
on a loaded machine and multiply by the number of worker processes.

    .venv/bin/python benchmarks/bench_render.py [--n 1000] [--split train]
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import cv2
import numpy as np

from hmer.data.augment import AugmentConfig, build_augment, jitter_traces
from hmer.data.inkml import parse_inkml, render_traces
from hmer.data.preprocess import glyph_height, preprocess, to_tensor
from hmer.paths import crohme_root


def generated_ink(count: int, seed: int = 0) -> list[list[np.ndarray]]:
    """Expressions of 1-20 wobbly ring/bar symbols, in arbitrary units."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 2 * math.pi, 30)
    expressions = []
    for _ in range(count):
        traces = []
        for i in range(int(rng.integers(1, 21))):
            x0, size = i * 12.0, rng.uniform(8, 12)
            if rng.random() < 0.5:
                ring = np.stack(
                    [x0 + size * 0.35 * (1 + np.cos(t)), size * 0.5 * (1 + np.sin(t))], 1
                )
                traces.append(ring + rng.normal(0, 0.2, ring.shape))
            else:
                traces.append(np.array([[x0 + 2, 2], [x0 + 4, 0], [x0 + 4, size]]))
        expressions.append(traces)
    return expressions


def per_core(label: str, items: list, work: Callable, unit: str = "images") -> list:
    began = time.process_time()
    results = [work(item) for item in items]
    seconds = time.process_time() - began
    rate = len(items) / seconds if seconds > 0 else float("inf")
    print(f"{label:<34} {rate:8.0f} {unit}/s/core   {1000 / rate:6.2f} ms each")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="expressions (default 1000)")
    parser.add_argument("--split", default="train", help="CROHME split (default train)")
    args = parser.parse_args()
    cv2.setNumThreads(1)

    root = crohme_root()
    if root is not None and (root / "inkml" / args.split).is_dir():
        files = sorted((root / "inkml" / args.split).rglob("*.inkml"))
        step = max(1, len(files) // args.n)
        data = [f.read_bytes() for f in files[::step][: args.n]]
        print(f"CROHME {args.split}: {len(data)} files (every {step}th)")
        inks = per_core("parse InkML", data, lambda d: _parse_or_none(d))
        traces = [ink.traces for ink in inks if ink is not None]
    else:
        print("CROHME not found: generated ink")
        traces = generated_ink(args.n)

    images = per_core("render (2 passes if needed)", traces, render_traces)
    per_core("preprocess a render", images, preprocess)
    per_core("render + preprocess", traces, lambda t: preprocess(render_traces(t)))
    rng = np.random.default_rng(0)
    cfg = AugmentConfig()
    per_core("jitter_traces + render", traces, lambda t: render_traces(jitter_traces(t, rng, cfg)))
    augment = build_augment(cfg, seed=0)
    augment(images[0])  # albumentations' first call builds its caches
    augmented = per_core("augment (default AugmentConfig)", images, augment)
    to_tensor(augmented[0])  # imports torch
    per_core("to_tensor", augmented, to_tensor)

    glyphs = np.array([glyph_height(image) for image in images])
    shapes = np.array([image.shape for image in images])
    print(
        f"renders: glyph height p5/p50/p95 = {np.percentile(glyphs, [5, 50, 95]).round(1)} px "
        f"(target 32); mean HxW = {shapes.mean(axis=0).round(0)}"
    )
    preprocessed = [preprocess(image) for image in images[:200]]
    same = np.mean(
        [abs(p.shape[0] - i.shape[0]) <= 2 for p, i in zip(preprocessed, images, strict=False)]
    )
    print(f"preprocess(render) keeps the height within 2 px for {same:.0%} of renders")


def _parse_or_none(data: bytes):
    from hmer.errors import DataError

    try:
        return parse_inkml(data)
    except DataError:
        return None


if __name__ == "__main__":
    main()
