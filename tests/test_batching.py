"""Bucketed batches under a padded-pixel budget, DDP sharding, exact resume; padding collate."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from hmer.data.batching import Batch, BucketBatchSampler, collate


def random_sizes(count: int = 500, seed: int = 0) -> list[tuple[int, int]]:
    rng = np.random.default_rng(seed)
    heights = rng.integers(20, 200, count)
    widths = (heights * rng.uniform(0.5, 6.0, count)).astype(int).clip(16, 1024)
    return list(zip(heights.tolist(), widths.tolist(), strict=True))


def padded(batch: list[int], sizes) -> int:
    return len(batch) * max(sizes[i][0] for i in batch) * max(sizes[i][1] for i in batch)


def test_padded_pixels_and_batch_size_are_capped():
    sizes = random_sizes()
    sampler = BucketBatchSampler(sizes, max_pixels=400_000, max_batch=16)
    batches = list(sampler)
    assert all(len(b) <= 16 for b in batches)
    assert all(padded(b, sizes) <= 400_000 for b in batches if len(b) > 1)
    assert len(batches) == len(sampler)


def test_an_image_over_the_budget_gets_a_batch_of_its_own():
    sizes = [(50, 100)] * 10 + [(256, 1024)]
    batches = list(BucketBatchSampler(sizes, max_pixels=100_000, max_batch=8))
    assert [10] in batches
    assert sorted(i for b in batches for i in b) == list(range(11))


def test_every_index_once_per_epoch_and_epochs_differ():
    sizes = random_sizes()
    sampler = BucketBatchSampler(sizes, max_pixels=300_000, max_batch=32, seed=1)
    sampler.set_epoch(0)
    first = list(sampler)
    assert sorted(i for b in first for i in b) == list(range(len(sizes)))
    sampler.set_epoch(1)
    second = list(sampler)
    assert sorted(i for b in second for i in b) == list(range(len(sizes)))
    assert first != second


def test_same_seed_same_batches_other_seed_other_batches():
    sizes = random_sizes()

    def run(seed: int) -> list[list[int]]:
        sampler = BucketBatchSampler(sizes, max_pixels=300_000, max_batch=32, seed=seed)
        sampler.set_epoch(3)
        return list(sampler)

    assert run(5) == run(5)
    assert run(5) != run(6)


@pytest.mark.parametrize("drop_last", [False, True])
def test_ranks_get_equal_counts_and_together_cover_the_epoch(drop_last: bool):
    sizes = random_sizes(301)
    world = 3
    samplers = [
        BucketBatchSampler(
            sizes, 200_000, 16, seed=2, rank=r, world_size=world, drop_last=drop_last
        )
        for r in range(world)
    ]
    per_rank = [list(s) for s in samplers]
    assert len({len(b) for b in per_rank}) == 1
    assert all(len(s) == len(per_rank[0]) for s in samplers)
    seen = [i for batches in per_rank for b in batches for i in b]
    if drop_last:
        assert len(seen) == len(set(seen))  # nothing repeated, a few dropped
    else:
        assert set(seen) == set(range(len(sizes)))  # all covered, a few repeated


def test_resume_mid_epoch_gives_the_rest_of_the_same_epoch():
    sizes = random_sizes()
    sampler = BucketBatchSampler(sizes, max_pixels=300_000, max_batch=32, seed=4)
    sampler.set_epoch(2)
    full = list(sampler)
    iterator = iter(sampler)
    for _ in range(5):
        next(iterator)
    state = sampler.state_dict()
    assert state == {"epoch": 2, "consumed": 5, "seed": 4}

    resumed = BucketBatchSampler(sizes, max_pixels=300_000, max_batch=32, seed=0)
    resumed.load_state_dict(state)
    resumed.set_epoch(2)  # a training loop sets the epoch again: the position survives
    assert len(resumed) == len(full) - 5
    assert list(resumed) == full[5:]
    assert list(resumed) == full  # the next pass over the epoch is complete again
    resumed.set_epoch(3)
    assert sorted(i for b in resumed for i in b) == list(range(len(sizes)))


def test_state_dict_with_the_training_loops_count():
    sampler = BucketBatchSampler(random_sizes(), 300_000, 32)
    list(sampler)  # a prefetching DataLoader runs ahead of training
    assert sampler.state_dict(consumed=3)["consumed"] == 3


def test_bucketing_pads_much_less_than_random_batches():
    sizes = random_sizes(2000)

    def share(batches) -> float:
        real = sum(sizes[i][0] * sizes[i][1] for b in batches for i in b)
        return 1 - real / sum(padded(b, sizes) for b in batches)

    bucketed = list(BucketBatchSampler(sizes, 1_000_000, 64))
    order = np.random.default_rng(0).permutation(len(sizes)).tolist()
    fixed = [order[i : i + len(bucketed[0])] for i in range(0, len(order), len(bucketed[0]))]
    assert share(bucketed) < 0.5 * share(fixed)


def test_collate_pads_bottom_right_and_masks_padding():
    items = [
        (torch.full((1, 3, 5), 0.5), [4, 5, 6], "a"),
        (torch.ones(1, 6, 2), [7], "b"),
    ]
    batch = collate(items, pad_id=0)
    assert isinstance(batch, Batch) and len(batch) == 2
    assert batch.images.shape == (2, 1, 6, 5) and batch.images.dtype == torch.float32
    assert batch.image_mask.shape == (2, 6, 5) and batch.image_mask.dtype == torch.bool
    assert torch.equal(batch.images[0, 0, :3, :5], torch.full((3, 5), 0.5))
    assert batch.images[0, 0, 3:].abs().sum() == 0
    assert batch.image_mask[0, :3, :5].logical_not().all() and batch.image_mask[0, 3:].all()
    assert batch.image_mask[1, :, :2].logical_not().all() and batch.image_mask[1, :, 2:].all()
    assert batch.tokens.tolist() == [[4, 5, 6], [7, 0, 0]]
    assert batch.lengths.tolist() == [3, 1] and batch.names == ["a", "b"]
    moved = batch.to("cpu")
    assert torch.equal(moved.images, batch.images) and moved.names == batch.names


def test_collate_rounds_padded_sides_up_to_a_multiple():
    batch = collate([(torch.ones(1, 17, 30), [1], "a")], pad_id=9, pad_multiple=16)
    assert batch.images.shape[-2:] == (32, 32)
    assert batch.image_mask[0, 17:].all() and batch.image_mask[0, :, 30:].all()
    assert not batch.image_mask[0, :17, :30].any()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinning memory needs CUDA")
def test_pin_memory():
    batch = collate([(torch.ones(1, 4, 4), [1], "a")], pad_id=0).pin_memory()
    assert batch.images.is_pinned() and batch.tokens.is_pinned()


def test_works_as_a_dataloader_batch_sampler():
    sizes = random_sizes(64)
    dataset = [(torch.ones(1, h, w), [1, 2], str(i)) for i, (h, w) in enumerate(sizes)]
    sampler = BucketBatchSampler(sizes, max_pixels=200_000, max_batch=8)
    loader = DataLoader(
        dataset, batch_sampler=sampler, collate_fn=functools.partial(collate, pad_id=0)
    )
    batches = list(loader)
    names = [name for batch in batches for name in batch.names]
    assert sorted(names, key=int) == [str(i) for i in range(64)]
    assert all(b.images.numel() <= 200_000 or len(b) == 1 for b in batches)


# --- static canvases (the GPU path) ----------------------------------------------------------


def static_sampler(sizes, lengths, seed=0, **kwargs) -> BucketBatchSampler:
    from hmer.data.batching import Canvases

    canvases = Canvases(max_pixels=400_000, max_batch=32, height_step=64, width_step=128)
    return BucketBatchSampler(
        sizes, 400_000, 32, seed=seed, canvases=canvases, lengths=lengths, **kwargs
    )


def test_static_canvases_give_few_fixed_shapes_under_the_cap_and_every_image_each_epoch():
    sizes = random_sizes(2000)
    lengths = np.random.default_rng(1).integers(1, 60, len(sizes)).tolist()
    sampler = static_sampler(sizes, lengths)
    allowed = set(sampler.shapes())
    seen = set()
    for epoch in range(2):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert {i for b in batches for i in b} == set(range(len(sizes)))  # nobody dropped
        for batch in batches:
            h, w, length = batch.shape
            shape = (len(batch), h, w, length)
            assert shape in allowed
            assert len(batch) * h * w <= 400_000  # never over the cap
            assert h % 64 == 0 and w % 128 == 0 and length % 16 == 0
            assert all(sizes[i][0] <= h and sizes[i][1] <= w for i in batch)  # fits its canvas
            assert all(lengths[i] <= length for i in batch)
            seen.add(shape)
    assert len(seen) <= len(allowed) <= 64
    # Repeats fill up only the last batch of a canvas that nothing larger contains.
    sampler.set_epoch(0)
    repeats = sum(len(b) for b in sampler) - len(sizes)
    maximal = [
        s for s in allowed if not any(o[1] >= s[1] and o[2] >= s[2] and o != s for o in allowed)
    ]
    assert 0 <= repeats < sum(b for b, *_ in maximal)


def test_static_batches_shard_over_ranks_and_resume_mid_epoch():
    sizes = random_sizes(600)
    lengths = [5] * len(sizes)
    whole = static_sampler(sizes, lengths, seed=3)
    whole.set_epoch(2)
    everything = list(whole)
    ranks = [static_sampler(sizes, lengths, seed=3, rank=r, world_size=2) for r in range(2)]
    for sampler in ranks:
        sampler.set_epoch(2)
    parts = [list(s) for s in ranks]
    assert len(parts[0]) == len(parts[1])
    assert {i for p in parts for b in p for i in b} == set(range(len(sizes)))
    resumed = static_sampler(sizes, lengths, seed=3)
    resumed.load_state_dict({"epoch": 2, "consumed": 3, "seed": 3})
    rest = list(resumed)
    assert rest == everything[3:] and [b.shape for b in rest] == [b.shape for b in everything[3:]]


def test_collate_pads_static_items_to_exactly_their_canvas():
    from hmer.data.augment import fit_within

    grown = np.full((70, 150), 255, np.uint8)  # augmentation made it larger than its canvas
    fitted = fit_within(grown, 64, 128)
    assert fitted.shape[0] <= 64 and fitted.shape[1] <= 128
    assert fit_within(fitted, 64, 128) is fitted  # what fits is left alone
    items = [
        (torch.ones(1, *fitted.shape), [4, 5], "a", (64, 128, 16)),
        (torch.ones(1, 10, 20), [4], "b", (64, 128, 16)),
    ]
    batch = collate(items, pad_id=0)
    assert batch.images.shape == (2, 1, 64, 128) and batch.tokens.shape == (2, 16)
    assert batch.image_mask[1, :10, :20].logical_not().all() and batch.image_mask[1, 10:].all()
    with pytest.raises(ValueError, match="exceeds its canvas"):
        collate([(torch.ones(1, 65, 20), [4], "c", (64, 128, 16))], pad_id=0)
    with pytest.raises(ValueError, match="different canvases"):
        collate([items[0], (torch.ones(1, 5, 5), [4], "d", (32, 64, 16))], pad_id=0)
