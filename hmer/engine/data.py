"""Datasets and loaders for a run, built from its config.

Samples are rendered and preprocessed ONCE into RAM (``load_samples`` with a process pool); the
DataLoader workers then only augment and convert to tensors. Augmentation is seeded per sample
from ``(seed, epoch, sample index)``, so a batch's pixels depend neither on the number of workers
nor on whether the run was resumed mid-epoch.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import random
import signal
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from hmer.data.augment import SymbolBank, build_augment, fit_within, reink
from hmer.data.batching import BucketBatchSampler, Canvases, collate
from hmer.data.datasets import Sample, crohme_split, load_samples
from hmer.data.preprocess import to_tensor
from hmer.data.vocab import Vocab
from hmer.errors import DataError

if TYPE_CHECKING:
    from hmer.config import Config, DataConfig

log = logging.getLogger(__name__)


def resolve_source(name: str, split: str | None) -> tuple[Path, str | None]:
    """``"crohme"`` -> the official InkML folder for ``split``; anything else is a path as given."""
    if name == "crohme":
        source, crohme_sub = crohme_split(split or "train")
        return Path(source), crohme_sub
    return Path(name), split


def load_split(
    cfg: Config, name: str, split: str | None, limit: int | None = None, keep_traces: bool = False
) -> list[Sample]:
    """All samples of one split, rendered/preprocessed with the run's settings (lenient loading);
    ``keep_traces``: InkML samples also keep their online ink."""
    source, sub = resolve_source(name, split)
    samples, skipped = load_samples(
        source,
        sub,
        render=cfg.render,
        preprocess=cfg.preprocess,
        workers=_load_workers(cfg.data.load_workers),
        limit=limit,
        cache_dir=cfg.data.cache_dir,
        keep_traces=keep_traces,
    )
    if not samples:
        raise DataError(f"no usable samples in split {split!r}", source=str(source))
    if skipped.count:
        log.warning("%s (split %s): %s", source, split, skipped)
    return samples


def split_validation(
    samples: Sequence[Sample], fraction: float, seed: int
) -> tuple[list[Sample], list[Sample]]:
    """(train, validation): about ``fraction`` of ``samples``, held out whole formula by whole
    formula.

    Every sample of a formula (same tokens) lands on the same side, so validation, like a test
    set, scores formulas the model has never seen written: half of CROHME's training samples
    share their formula with another one (4,847 distinct formulas in 8,835), while 25 of the 983
    2014 test formulas occur in train. A per-sample slice would score memorized formulas and
    pick checkpoints that memorize. The draw depends only on the formulas, names and ``seed``,
    not on loading order, so the same data always yields the same validation slice.
    """
    if not 0.0 <= fraction < 1.0:
        raise DataError(f"data.val_fraction must be in [0, 1), got {fraction}")
    groups: dict[tuple[str, ...], list[int]] = {}
    for i in sorted(range(len(samples)), key=lambda i: samples[i].name):
        groups.setdefault(tuple(samples[i].tokens), []).append(i)
    formulas = sorted(groups)
    n_val = round(fraction * len(samples))
    if fraction > 0 and len(formulas) > 1:
        n_val = max(n_val, 1)
    held: set[int] = set()
    for j in np.random.default_rng(seed).permutation(len(formulas)):
        if len(held) >= n_val:
            break
        if len(held) + len(groups[formulas[j]]) < len(samples):  # keep some training data
            held.update(groups[formulas[j]])
    train = [s for i, s in enumerate(samples) if i not in held]
    val = [s for i, s in enumerate(samples) if i in held]
    return train, val


def build_vocab(cfg: DataConfig, samples: Sequence[Sample]) -> Vocab:
    if cfg.vocab == "crohme":
        return Vocab.crohme()
    if cfg.vocab == "data":
        return Vocab.from_token_lists(s.tokens for s in samples)
    raise DataError(f"data.vocab must be 'crohme' or 'data', got {cfg.vocab!r}")


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed that is a pure function of (seed, epoch, index)."""
    digest = hashlib.blake2b(f"{seed}:{epoch}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class SampleDataset(Dataset):
    """In-RAM samples -> ``(image (1, H, W) float32 ink=1, token ids, name)``.

    A key ``(index, epoch, (H, W, L))`` (a static batch's, see :class:`EpochBatches`) also keeps
    the image within its canvas ``H`` x ``W`` (shrunk when augmentation grew it past it) and
    passes the shape on as a fourth element, for ``collate`` to pad to exactly that.

    Indexing with ``(index, epoch)`` (what :class:`EpochBatches` yields) augments with a seed
    derived from ``(seed, epoch, index)``; a plain ``index`` never augments. Augmenting first
    redraws a sample that has online ink from it with probability ``reink_p``
    (``reink(traces, rng, symbols=...) -> image``, e.g. :func:`hmer.data.augment.reink`), then
    applies ``augment`` to the image.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        vocab: Vocab,
        augment: Callable[[np.ndarray], np.ndarray] | None = None,
        seed: int = 0,
        reink: Callable[..., np.ndarray] | None = None,
        reink_p: float = 0.0,
    ):
        self.samples = list(samples)
        self.ids = [vocab.encode(s.tokens) for s in self.samples]
        self.augment = augment
        self.seed = seed
        self.reink, self.reink_p = reink, reink_p

    def __len__(self) -> int:
        return len(self.samples)

    def sizes(self) -> list[tuple[int, int]]:
        """(H, W) of each stored image: what the bucketing sampler groups by."""
        return [(int(s.image.shape[0]), int(s.image.shape[1])) for s in self.samples]

    def __getitem__(self, key: int | tuple[Any, ...]) -> tuple[Any, ...]:
        index, epoch, *static = key if isinstance(key, tuple) else (key, None)
        sample = self.samples[index]
        image = sample.image
        if epoch is not None:
            seed = sample_seed(self.seed, epoch, index)
            if self.reink is not None and sample.traces is not None:
                rng = np.random.default_rng(seed)
                if rng.random() < self.reink_p:
                    image = self._reinked(sample, rng)
            if self.augment is not None:
                seed_everything_for(self.augment, seed)
                image = self.augment(image)
        if not static:
            return to_tensor(image), self.ids[index], sample.name
        shape = static[0]
        image = fit_within(image, shape[0], shape[1])
        return to_tensor(image), self.ids[index], sample.name, shape

    def _reinked(self, sample: Sample, rng: np.random.Generator) -> np.ndarray:
        try:
            return self.reink(sample.traces, rng, symbols=sample.symbols or ())
        except DataError:  # jittered ink that preprocessing rejects: keep the stored image
            return sample.image


def seed_everything_for(augment: Any, seed: int) -> None:
    """Seed the RNG ``augment`` draws from: its own (``set_random_seed``, as hmer's augmenter and
    albumentations pipelines have), else the global Python / NumPy ones."""
    if hasattr(augment, "set_random_seed"):
        augment.set_random_seed(seed)
    else:
        random.seed(seed)
        np.random.seed(seed % 2**32)


class EpochBatches:
    """Batch sampler for the DataLoader: the bucketed batches of the current epoch as
    ``(index, epoch)`` pairs, so that workers can seed augmentation per sample and epoch
    (``(index, epoch, (H, W, L))`` for static batches, whose shape the items carry).

    ``set_epoch(epoch, skip)`` starts the next iteration after the epoch's first ``skip``
    batches: bucketing is a pure function of seed and epoch, so skipping the batches already
    trained on reproduces the uninterrupted run.
    """

    def __init__(self, sampler: BucketBatchSampler):
        self.sampler = sampler
        self.epoch = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch = epoch
        self.sampler.set_epoch(epoch)
        if skip:
            self.sampler.load_state_dict(self.sampler.state_dict(consumed=skip))

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[list[tuple[Any, ...]]]:
        epoch = self.epoch
        for batch in self.sampler:
            shape = getattr(batch, "shape", None)  # a StaticBatch's (H, W, L)
            yield [(int(i), epoch) if shape is None else (int(i), epoch, shape) for i in batch]


def _seed_worker(worker_id: int, seed: int, rank: int) -> None:
    """Per-(seed, rank, worker) global RNGs, for anything outside the per-sample seeding."""
    # Ctrl-C reaches the whole process group: let the main process stop the run cleanly.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Many workers x many intra-op threads each oversubscribe the cores (seen: a 16-core GPU
    # host fed ~100 samples/s): a worker's ops are small, so one thread each is fastest.
    torch.set_num_threads(1)
    worker_seed = sample_seed(seed, rank, worker_id) % 2**32
    random.seed(worker_seed)
    np.random.seed(worker_seed)
    torch.manual_seed(worker_seed)


@dataclass
class TrainData:
    """Everything the loop needs about data."""

    vocab: Vocab
    train: SampleDataset
    val: list[Sample]
    tests: dict[str, list[Sample]]
    batches: EpochBatches
    loader: DataLoader


def build_data(
    cfg: Config,
    *,
    rank: int = 0,
    world_size: int = 1,
    device: torch.device | None = None,
    vocab: Vocab | None = None,
    load_tests: bool = True,
) -> TrainData:
    """Load train (+ validation slice) and test samples into RAM and build the training loader.

    ``vocab``: the vocabulary to use (a resumed run's); None builds it from ``cfg.data.vocab``.
    """
    data_cfg = cfg.data
    reink_p = cfg.augment.jitter_p if data_cfg.augment and cfg.augment.enabled else 0.0
    everything = load_split(
        cfg, data_cfg.train, data_cfg.train_split, limit=data_cfg.limit, keep_traces=reink_p > 0
    )
    if data_cfg.val_on_train:
        train_samples, val_samples = everything, list(everything)
    else:
        train_samples, val_samples = split_validation(
            everything, data_cfg.val_fraction, data_cfg.val_seed
        )
    vocab = vocab or build_vocab(data_cfg, everything)
    known = set(vocab.tokens)
    unknown = sorted({t for s in everything for t in s.tokens if t not in known})
    if unknown:
        log.warning("tokens outside the vocabulary become <unk>: %s", " ".join(unknown[:20]))

    tests: dict[str, list[Sample]] = {}
    if load_tests and cfg.train.final_test:
        for split in data_cfg.test_splits:
            tests[split] = load_split(cfg, data_cfg.test, split, limit=data_cfg.test_limit)

    augment = build_augment(cfg.augment) if data_cfg.augment else None
    reink_fn = None
    if reink_p > 0:
        bank = None
        if cfg.augment.swap_p > 0:  # donors from the training slice only, never validation
            bank = SymbolBank((s.traces, s.symbols) for s in train_samples if s.symbols)
        reink_fn = functools.partial(
            reink, cfg=cfg.augment, render=cfg.render, preprocess=cfg.preprocess, bank=bank
        )
    canvases = None
    if data_cfg.static_shapes:
        canvases = Canvases(
            cfg.train.batch_pixels,
            cfg.train.max_batch,
            data_cfg.canvas_height_step,
            data_cfg.canvas_width_step,
            data_cfg.length_step,
        )
    train_set = SampleDataset(
        train_samples, vocab, augment, seed=cfg.train.seed, reink=reink_fn, reink_p=reink_p
    )
    bucket = BucketBatchSampler(
        train_set.sizes(),
        max_pixels=cfg.train.batch_pixels,
        max_batch=cfg.train.max_batch,
        shuffle=True,
        seed=cfg.train.seed,
        rank=rank,
        world_size=world_size,
        drop_last=False,
        pad_multiple=data_cfg.pad_multiple,
        canvases=canvases,
        lengths=[len(ids) for ids in train_set.ids],
    )
    batches = EpochBatches(bucket)
    workers = data_cfg.num_workers
    if workers > 0:
        # OpenCV's own thread pool, times every worker, oversubscribes the cores just like torch's
        # threads (see _seed_worker). Set in this process, before the workers fork: a forked
        # child must not touch the pool setting itself.
        cv2.setNumThreads(1)
    on_cuda = device is not None and device.type == "cuda"
    loader = DataLoader(
        train_set,
        batch_sampler=batches,
        collate_fn=functools.partial(
            collate, pad_id=vocab.pad_id, pad_multiple=data_cfg.pad_multiple
        ),
        num_workers=workers,
        pin_memory=data_cfg.pin_memory and on_cuda,
        persistent_workers=data_cfg.persistent_workers and workers > 0,
        prefetch_factor=data_cfg.prefetch_factor if workers > 0 else None,
        worker_init_fn=functools.partial(_seed_worker, seed=cfg.train.seed, rank=rank),
        # A private generator: creating an iterator must not draw from the global torch RNG,
        # or a resumed run (new iterator mid-epoch) would see different dropout masks.
        generator=torch.Generator().manual_seed(cfg.train.seed),
    )
    return TrainData(vocab, train_set, val_samples, tests, batches, loader)


def _load_workers(configured: int | None) -> int:
    """``configured``, or this process's share of the cores (torchrun starts one per device)."""
    if configured is not None:
        return configured
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, cores // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
