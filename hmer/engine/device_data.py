"""The training set resident on the device: no loader workers, no per-step image copies.

Every preprocessed training image is stored once as uint8 on the device, in one tensor per
static canvas (``data.static_shapes``: each image at the top left of its own canvas). A step
sends only the batch's indices; the images are gathered, padded to the batch's canvas,
converted to float, augmented by :func:`hmer.data.device_augment.augment_batch` and masked,
all on the device. Batches, their order and their shapes are those of the run's
:class:`hmer.data.batching.BucketBatchSampler`, so resume works as with the DataLoader; the
augmentation of each batch is seeded from ``(seed, epoch, batch number)``.

CROHME train at 32 px glyphs takes about 360 MB this way. The same code runs on a CPU (tests).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from hmer.data.augment import AugmentConfig
from hmer.data.batching import Batch, BucketBatchSampler, StaticBatch
from hmer.data.device_augment import augment_batch, box_mask
from hmer.engine.data import SampleDataset, sample_seed

__all__ = ["DeviceData"]


class DeviceData:
    """``dataset``'s images and tokens on ``device``, served in ``sampler``'s static batches."""

    def __init__(
        self,
        dataset: SampleDataset,
        sampler: BucketBatchSampler,
        device: torch.device,
        augment: AugmentConfig | None,
        seed: int,
        pad_id: int,
    ):
        if sampler.canvases is None:
            raise ValueError("DeviceData needs a sampler with static canvases")
        self.sampler, self.device, self.augment, self.seed = sampler, device, augment, seed
        self.names = [s.name for s in dataset.samples]
        self.sizes = torch.tensor(dataset.sizes(), dtype=torch.long, device=device)
        members = sampler.canvas_groups()
        #: index -> (home canvas, row in that canvas's tensor)
        self.home: list[tuple[tuple[int, int], int]] = [((0, 0), 0)] * len(dataset)
        for canvas, indices in members.items():
            for row, index in enumerate(indices):
                self.home[index] = (canvas, row)
        self.images: dict[tuple[int, int], torch.Tensor] = {}
        for (height, width), indices in members.items():
            stack = np.zeros((len(indices), height, width), np.uint8)
            for row, index in enumerate(indices):
                image = dataset.samples[index].image
                stack[row, : image.shape[0], : image.shape[1]] = image
            self.images[(height, width)] = torch.from_numpy(stack).to(device)
        # As wide as the widest static length, so that every batch is a slice.
        longest = max(max(len(ids) for ids in dataset.ids), *(s[3] for s in sampler.shapes()))
        tokens = np.full((len(dataset.ids), longest), pad_id, np.int64)
        for index, ids in enumerate(dataset.ids):
            tokens[index, : len(ids)] = ids
        self.tokens = torch.from_numpy(tokens).to(device)
        self.lengths = torch.tensor([len(ids) for ids in dataset.ids], device=device)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() for t in self.images.values())

    def batch(self, indices: StaticBatch, generator_seed: int | None = None) -> Batch:
        """The padded (and, with ``generator_seed``, augmented) batch of ``indices``."""
        height, width, length = indices.shape
        parts, order = [], []
        by_home: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for position, index in enumerate(indices):
            canvas, row = self.home[index]
            by_home.setdefault(canvas, []).append((position, row))
        for canvas, rows in by_home.items():
            picked = torch.tensor([r for _, r in rows], device=self.device)
            gathered = self.images[canvas].index_select(0, picked)
            parts.append(F.pad(gathered, (0, width - canvas[1], 0, height - canvas[0])))
            order += [p for p, _ in rows]
        where = torch.tensor(order, device=self.device).argsort()
        images = torch.cat(parts).index_select(0, where)[:, None].float().div_(255.0)
        index = torch.tensor(list(indices), device=self.device)
        sizes = self.sizes.index_select(0, index)
        if self.augment is not None and generator_seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(generator_seed)
            images = augment_batch(images, sizes, self.augment, generator)
        return Batch(
            images,
            ~box_mask(sizes, height, width),
            self.tokens.index_select(0, index)[:, :length],
            self.lengths.index_select(0, index),
            [self.names[i] for i in indices],
        )

    def epoch(self, epoch: int) -> Iterator[Batch]:
        """The rest of ``epoch``'s batches for this rank (the sampler's position decides where
        it starts: ``EpochBatches.set_epoch(epoch, skip)``), augmented when training augments."""
        start = len(self.sampler.rank_batches()) - len(self.sampler)
        seed = self.seed + 1_000_003 * self.sampler.rank  # each rank its own augmentations
        for number, indices in enumerate(self.sampler, start=start):
            yield self.batch(indices, sample_seed(seed, epoch, number))
