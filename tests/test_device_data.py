"""The training set resident on the device (data.on_device): the same batches as the loader
path, augmented on the device inside each image's box, and an exact resume (run here on a CPU)."""

from __future__ import annotations

import torch
from helpers import RESUME_OVERRIDES, assert_same_tensors, tiny_config

from hmer.data.augment import AugmentConfig
from hmer.data.batching import collate
from hmer.data.device_augment import augment_batch, box_mask
from hmer.engine.data import build_data
from hmer.engine.device_data import DeviceData
from hmer.engine.train import train

STATIC = ("data.static_shapes=true", "data.canvas_height_step=32", "data.canvas_width_step=64")


def resident(cfg) -> tuple[DeviceData, object]:
    data = build_data(cfg, load_tests=False)
    sampler = data.batches.sampler
    return DeviceData(data.train, sampler, torch.device("cpu"), None, 0, data.vocab.pad_id), data


def test_resident_batches_equal_the_loader_paths_batches(tiny_data):
    device_data, data = resident(tiny_config(tiny_data, *STATIC, "data.augment=false"))
    data.batches.set_epoch(1)
    batches = list(data.batches.sampler)
    assert batches
    for indices in batches:
        ours = device_data.batch(indices)
        items = [data.train[(i, 1, indices.shape)] for i in indices]
        theirs = collate(items, pad_id=data.vocab.pad_id)
        assert torch.equal(ours.images, theirs.images)
        assert torch.equal(ours.image_mask, theirs.image_mask)
        assert torch.equal(ours.tokens, theirs.tokens)
        assert torch.equal(ours.lengths, theirs.lengths) and ours.names == theirs.names
    assert device_data.nbytes == sum(t.numel() for t in device_data.images.values())


def test_device_augmentation_stays_in_each_box_and_is_a_function_of_its_seed():
    images = torch.zeros(6, 1, 64, 128)
    sizes = torch.tensor([[40, 100], [64, 128], [20, 30], [50, 64], [33, 127], [64, 10]])
    inside = box_mask(sizes, 64, 128)[:, None]
    for i, (h, w) in enumerate(sizes.tolist()):
        images[i, 0, 2 : h - 2, 2 : w - 2] = 1.0  # ink up to 2 px from the box edge
    cfg = AugmentConfig(affine_p=1.0, scale_max=1.3, rotate_deg=10, shear_deg=15)

    def run(seed: int) -> torch.Tensor:
        return augment_batch(images, sizes, cfg, torch.Generator().manual_seed(seed))

    out = run(0)
    assert out.shape == images.shape and out.min() >= 0 and out.max() <= 1
    assert not out[~inside.expand_as(out)].any()  # nothing drawn outside the box
    assert torch.equal(out, run(0)) and not torch.equal(out, run(1))
    # Ink near the corners of a box survives the strongest maps: they shrink to fit the box
    # instead of cutting the first or last symbol off.
    corners = torch.zeros_like(images)
    for i, (h, w) in enumerate(sizes.tolist()):
        for y, x in ((2, 2), (2, w - 5), (h - 5, 2), (h - 5, w - 5)):
            corners[i, 0, y : y + 3, x : x + 3] = 1.0
    only_affine = AugmentConfig(
        affine_p=1.0, scale_max=1.3, rotate_deg=10, shear_deg=15, thickness_p=0, blur_p=0, noise_p=0
    )
    for seed in range(5):
        moved = augment_batch(corners, sizes, only_affine, torch.Generator().manual_seed(seed))
        for i, (h, w) in enumerate(sizes.tolist()):
            if w < 30:  # a 10 px wide box: its corner dots touch, quadrants mean nothing
                continue
            quadrants = [
                moved[i, 0, : h // 2, : w // 2], moved[i, 0, : h // 2, w // 2 : w],
                moved[i, 0, h // 2 : h, : w // 2], moved[i, 0, h // 2 : h, w // 2 : w],
            ]  # fmt: skip
            assert all(q.sum() > 0.25 for q in quadrants), (seed, i)
    off = AugmentConfig(affine_p=0, thickness_p=0, blur_p=0, noise_p=0)
    assert torch.equal(augment_batch(images, sizes, off, torch.Generator()), images * inside)
    assert augment_batch(images, sizes, AugmentConfig(enabled=False), torch.Generator()) is images


def test_a_resident_run_resumes_exactly(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, *RESUME_OVERRIDES, *STATIC, "data.on_device=true")
    straight = train(cfg, tmp_path / "straight")
    assert straight.status == "finished" and straight.step == 8
    assert train(cfg, tmp_path / "resumed", stop_after_steps=3).status == "interrupted"
    assert train(cfg, tmp_path / "resumed", resume=True).status == "finished"
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)
    assert_same_tensors(a["train_state"]["model"], b["train_state"]["model"], "weights")
