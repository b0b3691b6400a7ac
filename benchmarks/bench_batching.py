"""Padded-pixel share of BucketBatchSampler vs random batching, on CROHME train image sizes.

The share is the fraction of the pixels in padded batches ``B x max(H) x max(W)`` that are
padding: compute the GPU spends on nothing. Sizes come from rendering + preprocessing CROHME
train with the default settings (generated sizes when CROHME is absent).

    .venv/bin/python benchmarks/bench_batching.py [--workers N] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from hmer.data.batching import BucketBatchSampler


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
    args = parser.parse_args()

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
