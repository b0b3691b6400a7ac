"""Padded-pixel share of BucketBatchSampler vs random batching, on CROHME train image sizes.

The share is the fraction of the pixels in padded batches ``B x max(H) x max(W)`` that are
padding: compute the GPU spends on nothing. Sizes come from rendering + preprocessing CROHME
train with the default settings (generated sizes when CROHME is absent).

With ``--epochs N`` it then batches N epochs of CROHME train as the speed run does
(``configs/crohme_h200.yaml``: augmentation on, static canvases), augmenting every sample, and
compares free bucketing on the same augmented images; its last line is::

    distinct shapes: N, padding: P%, over cap: K

(distinct ``(B, H, W, L)`` over the epochs, padded share of the batches' pixels, batches above
``train.batch_pixels``).

    .venv/bin/python benchmarks/bench_batching.py [--workers N] [--cache-dir DIR] [--epochs 2]
        [--limit N] [KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from hmer.data.batching import BucketBatchSampler

ROOT = Path(__file__).resolve().parents[1]


def speed_run_batches(args: argparse.Namespace) -> None:
    """Batch ``args.epochs`` epochs of augmented CROHME train as the speed-run config does."""
    from hmer.config import load_config
    from hmer.data.augment import build_augment
    from hmer.data.batching import Canvases
    from hmer.data.datasets import crohme_split, load_samples
    from hmer.data.vocab import Vocab
    from hmer.engine.data import SampleDataset

    cfg = load_config(ROOT / "configs" / "crohme_h200.yaml", args.overrides)
    source, split = crohme_split("train")
    samples, _ = load_samples(
        source,
        split,
        render=cfg.render,
        preprocess=cfg.preprocess,
        workers=args.workers,
        cache_dir=args.cache_dir,
        limit=args.limit,
    )
    d, t = cfg.data, cfg.train
    canvases = Canvases(
        t.batch_pixels, t.max_batch, d.canvas_height_step, d.canvas_width_step, d.length_step
    )
    augment = build_augment(cfg.augment)
    dataset = SampleDataset(samples, Vocab.crohme(), augment, seed=t.seed)
    lengths = [len(ids) for ids in dataset.ids]
    static = BucketBatchSampler(
        dataset.sizes(), t.batch_pixels, t.max_batch, canvases=canvases, lengths=lengths
    )
    free = BucketBatchSampler(dataset.sizes(), t.batch_pixels, t.max_batch)
    began = time.perf_counter()
    rows = {"free bucketing": [], "static canvases": []}
    for epoch in range(args.epochs):
        plain = [dataset[(i, epoch)][0].shape[-2:] for i in range(len(dataset))]  # augmented
        static.set_epoch(epoch)
        free.set_epoch(epoch)
        for batch in static.epoch_batches():
            items = [dataset[(i, epoch, batch.shape)] for i in batch]  # kept on the canvas
            real = sum(item[0].shape[-2] * item[0].shape[-1] for item in items)
            rows["static canvases"].append(((len(batch), *batch.shape), real))
        for batch in free.epoch_batches():
            h = max(plain[i][0] for i in batch)
            w = max(plain[i][1] for i in batch)
            length = max(len(dataset.ids[i]) for i in batch)
            real = sum(plain[i][0] * plain[i][1] for i in batch)
            rows["free bucketing"].append(((len(batch), h, w, length), real))
    seconds = time.perf_counter() - began
    print(
        f"\n{len(samples)} CROHME train samples at {cfg.render.symbol_height:.0f} px glyphs, "
        f"augmented, {args.epochs} epochs ({seconds:.0f} s); cap {t.batch_pixels:,} px, "
        f"max batch {t.max_batch}"
    )
    line = ""
    for name, batches in rows.items():
        shapes = {shape for shape, _ in batches}
        padded = sum(b * h * w for (b, h, w, _), _ in batches)
        padding = 100.0 * (1.0 - sum(real for _, real in batches) / padded)
        over = sum(b * h * w > t.batch_pixels for (b, h, w, _), _ in batches)
        line = f"distinct shapes: {len(shapes)}, padding: {padding:.1f}%, over cap: {over}"
        print(f"  {name:<16} {len(batches)} batches; {line}")
    print(line)


def crohme_sizes(workers: int, cache_dir: str | None) -> np.ndarray | None:
    from hmer.data.datasets import crohme_split, load_samples
    from hmer.errors import DataError

    try:
        source, split = crohme_split("train")
    except DataError:
        return None
    began = time.perf_counter()
    samples, report = load_samples(source, split, workers=workers, cache_dir=cache_dir)
    seconds = time.perf_counter() - began
    print(f"CROHME train: {len(samples)} samples in {seconds:.1f} s ({report.count} skipped)")
    return np.array([s.image.shape for s in samples])


def share(batches: list[list[int]], sizes: np.ndarray) -> float:
    real = sum(int(sizes[b, 0].dot(sizes[b, 1])) for b in map(np.asarray, batches))
    padded = sum(
        len(b) * int(sizes[b, 0].max()) * int(sizes[b, 1].max()) for b in map(np.asarray, batches)
    )
    return 1.0 - real / padded


def random_capped(
    sizes: np.ndarray, max_pixels: int, max_batch: int, seed: int = 0
) -> list[list[int]]:
    """Shuffled order cut greedily under the same padded-pixel cap (no grouping by size)."""
    batches, batch, max_h, max_w = [], [], 0, 0
    for index in np.random.default_rng(seed).permutation(len(sizes)).tolist():
        h, w = sizes[index]
        new_h, new_w = max(max_h, h), max(max_w, w)
        if batch and (len(batch) >= max_batch or (len(batch) + 1) * new_h * new_w > max_pixels):
            batches.append(batch)
            batch, new_h, new_w = [], h, w
        batch.append(index)
        max_h, max_w = new_h, new_w
    return [*batches, batch]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--cache-dir", help="reuse preprocessed images between runs")
    parser.add_argument("--epochs", type=int, help="then batch this many augmented epochs")
    parser.add_argument("--limit", type=int, help="only the first N samples (with --epochs)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    args = parser.parse_args()
    if args.epochs:
        speed_run_batches(args)
        return

    sizes = crohme_sizes(args.workers, args.cache_dir)
    if sizes is None:
        print("CROHME not found: generated sizes")
        rng = np.random.default_rng(0)
        heights = rng.integers(40, 256, 8835)
        sizes = np.stack(
            [heights, (heights * rng.uniform(0.5, 5, 8835)).astype(int).clip(30, 1024)], 1
        )
    heights, widths = sizes[:, 0], sizes[:, 1]
    print(
        f"image sizes: H p50 {np.median(heights):.0f} max {heights.max()}, W p50 "
        f"{np.median(widths):.0f} max {widths.max()}, mean area {sizes.prod(1).mean():.0f}"
    )
    columns = ("bucketed", "random, same cap", "random, same count")
    print(f"\n{'max_pixels':>10} {'max_batch':>9} | " + " | ".join(f"{c:>22}" for c in columns))
    for max_pixels, max_batch in [
        (1_000_000, 64),
        (2_000_000, 64),
        (4_000_000, 128),
        (8_000_000, 256),
    ]:
        sampler = BucketBatchSampler(sizes.tolist(), max_pixels, max_batch, seed=0)
        bucketed = sampler.epoch_batches()
        capped = random_capped(sizes, max_pixels, max_batch)
        mean = len(sizes) / len(bucketed)
        order = np.random.default_rng(0).permutation(len(sizes))
        fixed = [order[i : i + round(mean)].tolist() for i in range(0, len(order), round(mean))]
        cells = (
            f"{share(bucketed, sizes):6.1%} padding, B={mean:5.1f}",
            f"{share(capped, sizes):6.1%} padding, B={len(sizes) / len(capped):5.1f}",
            f"{share(fixed, sizes):6.1%} padding",
        )
        print(f"{max_pixels:>10,} {max_batch:>9} | " + " | ".join(f"{c:>22}" for c in cells))
    print("\nsampler knobs at 2,000,000 px / 64:")
    for bucket in (8, 16, 32):
        for noise in (0.0, 0.02, 0.05, 0.1):
            sampler = BucketBatchSampler(
                sizes.tolist(), 2_000_000, 64, height_bucket=bucket, noise=noise
            )
            batches = sampler.epoch_batches()
            padding = share(batches, sizes)
            label = f"height_bucket {bucket:>2} noise {noise:.2f}"
            print(f"  {label}: {padding:6.1%} padding, {len(batches)} batches")


if __name__ == "__main__":
    main()
