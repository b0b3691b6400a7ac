"""Augmentation keeps the data convention (ink 255 on 0, tight crop) and is seedable."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from hmer.data.augment import (
    AugmentConfig,
    SymbolBank,
    build_augment,
    jitter_traces,
    preview_grid,
    reink,
    swap_symbols,
)
from hmer.data.inkml import RenderConfig, ink_symbol_height, render_traces
from hmer.data.preprocess import PreprocessConfig

NONE = AugmentConfig(affine_p=0.0, elastic_p=0.0, thickness_p=0.0, blur_p=0.0, noise_p=0.0)
SCALE_ONLY = {"affine_p": 1.0, "rotate_deg": 0.0, "shear_deg": 0.0}


def strokes(count: int = 6) -> list[np.ndarray]:
    t = np.linspace(0, 2 * math.pi, 24)
    return [
        np.stack([i * 12 + 3.5 * (1 + np.cos(t)), 5 * (1 + np.sin(t))], 1)
        if i % 2 == 0
        else np.array([[i * 12 + 2, 2], [i * 12 + 4, 0], [i * 12 + 4, 10]])
        for i in range(count)
    ]


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return render_traces(strokes())


def assert_convention(out: np.ndarray, margin: int = 4) -> None:
    assert out.dtype == np.uint8 and out.ndim == 2 and out.flags.c_contiguous
    assert out.max() >= 128  # ink survives
    assert np.count_nonzero(out) < 0.6 * out.size  # background 0 dominates
    rows = np.flatnonzero(out.any(axis=1))
    cols = np.flatnonzero(out.any(axis=0))
    assert (rows[0], cols[0]) == (margin, margin)  # re-cropped: the ink starts at the margin
    assert (rows[-1], cols[-1]) == (out.shape[0] - margin - 1, out.shape[1] - margin - 1)


def test_default_augmentation_keeps_the_convention(image: np.ndarray):
    augment = build_augment(AugmentConfig(), seed=0)
    outputs = [augment(image) for _ in range(30)]
    for out in outputs:
        assert_convention(out)
    assert sum(not np.array_equal(o, image) for o in outputs) >= 25
    areas = [o.size / image.size for o in outputs]
    assert min(areas) > 0.5 and max(areas) < 2.0


def test_seeded_augmentation_is_reproducible(image: np.ndarray):
    one, two = build_augment(AugmentConfig(), seed=7), build_augment(AugmentConfig(), seed=7)
    assert all(np.array_equal(one(image), two(image)) for _ in range(5))
    one.set_random_seed(11)
    two.set_random_seed(11)
    assert np.array_equal(one(image), two(image))
    other = build_augment(AugmentConfig(), seed=8)
    assert any(not np.array_equal(one(image), other(image)) for _ in range(5))


def test_a_new_process_draws_a_fresh_seed(image: np.ndarray):
    augment = build_augment(AugmentConfig(), seed=3)
    twin = build_augment(AugmentConfig(), seed=3)
    twin._pid = -1  # what a forked DataLoader worker looks like to the augmenter
    assert any(not np.array_equal(augment(image), twin(image)) for _ in range(5))


def test_disabled_is_the_identity(image: np.ndarray):
    augment = build_augment(AugmentConfig(enabled=False))
    assert augment(image) is image


@pytest.mark.parametrize(
    ("change", "effect"),
    [
        ({"thickness_p": 1.0, "thin_max": 0}, "thicker"),
        ({"thickness_p": 1.0, "thicken_max": 0}, "thinner"),
        ({**SCALE_ONLY, "scale_min": 1.3, "scale_max": 1.3}, "larger"),
        ({**SCALE_ONLY, "scale_min": 0.7, "scale_max": 0.7}, "smaller"),
        ({"elastic_p": 1.0, "elastic_std": 2.0}, "moved"),
        ({"blur_p": 1.0}, "moved"),
        ({"noise_p": 1.0}, "moved"),
    ],
)  # fmt: skip
def test_each_operation_does_its_job(image: np.ndarray, change: dict, effect: str):
    augment = build_augment(dataclasses.replace(NONE, **change), seed=0)
    out = augment(image)
    assert_convention(out)
    mass, base = out.astype(np.int64).sum(), image.astype(np.int64).sum()
    if effect == "thicker":
        assert mass > 1.3 * base
    elif effect == "thinner":
        assert mass < 0.8 * base
    elif effect == "larger":
        assert out.shape[1] > 1.2 * image.shape[1]
    elif effect == "smaller":
        assert out.shape[1] < 0.8 * image.shape[1]
    else:
        assert not np.array_equal(out, image)
        assert 0.6 * base < mass < 1.4 * base


def test_outputs_stay_within_the_size_limits():
    wide = render_traces(strokes(60))
    cfg = dataclasses.replace(NONE, affine_p=1.0, scale_min=1.3, scale_max=1.3, max_width=400)
    out = build_augment(cfg, seed=0)(wide)
    assert out.shape[1] <= 400 and out.shape[0] <= cfg.max_height


def test_jitter_traces_moves_strokes_a_little_and_reproducibly():
    traces = strokes()
    copy = [t.copy() for t in traces]
    cfg = AugmentConfig()
    first = jitter_traces(traces, np.random.default_rng(0), cfg)
    again = jitter_traces(traces, np.random.default_rng(0), cfg)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(traces, copy, strict=True))  # input untouched
    assert [t.shape for t in first] == [t.shape for t in traces]
    unit = ink_symbol_height(traces)
    shifts = [np.abs(a - b).max() for a, b in zip(first, traces, strict=True)]
    assert 0 < max(shifts) < 0.5 * unit
    disabled = jitter_traces(traces, np.random.default_rng(0), AugmentConfig(enabled=False))
    assert all(np.array_equal(a, b) for a, b in zip(disabled, traces, strict=True))


def box(traces: list[np.ndarray]) -> np.ndarray:
    points = np.concatenate(traces)
    return np.concatenate([points.min(axis=0), points.max(axis=0)])


def test_swapped_symbols_are_another_hand_fitted_to_the_original_box():
    """swap_symbols: a symbol drawn again by a donor of the same label fills the original's
    bounding box (a flat donor takes the diagonals' ratio on its flat axis); symbols without a
    donor, and traces outside any symbol, stay as they were."""
    x = [np.array([[0.0, 0.0], [4.0, 6.0]]), np.array([[0.0, 6.0], [4.0, 0.0]])]  # box 4 x 6
    minus = [np.array([[10.0, 3.0], [14.0, 3.0]])]
    stray = np.array([[20.0, 0.0], [20.0, 6.0]])
    traces = [*x, *minus, stray]
    symbols = [("x", (0, 1)), ("-", (2,)), ("y", (3,))]
    donor_x = [np.array([[100.0, 100.0], [110.0, 130.0]], np.float32)]  # another file's units
    donor_minus = [np.array([[0.0, 0.0], [2.0, 0.0]], np.float32)]
    bank = SymbolBank([(donor_x, [("x", (0,))]), (donor_minus, [("-", (0,))])])
    out = swap_symbols(traces, symbols, bank, np.random.default_rng(0), p=1.0)

    *kept, drawn_x, drawn_minus = out  # kept traces first, then the donors' strokes
    assert len(kept) == 1 and np.array_equal(kept[0], stray)  # "y" has no donor
    np.testing.assert_allclose(box([drawn_x]), [0, 0, 4, 6])  # 10 x 30 fitted to 4 x 6
    np.testing.assert_allclose(drawn_minus, [[10, 3], [14, 3]])  # 2 wide fitted to 4

    untouched = swap_symbols(traces, symbols, bank, np.random.default_rng(0), p=0.0)
    assert all(np.array_equal(a, b) for a, b in zip(untouched, traces, strict=True))


def test_reink_swaps_symbols_only_with_a_bank_and_a_positive_share():
    traces = strokes()
    symbols = [(f"s{i % 2}", (i,)) for i in range(len(traces))]
    bank = SymbolBank([(strokes(8)[2:4], [("s0", (1,)), ("s1", (0,))])])
    render, prep = RenderConfig(), PreprocessConfig()

    def draw(swap_p: float, with_bank: bool) -> np.ndarray:
        cfg = AugmentConfig(
            swap_p=swap_p, jitter_offset=0, jitter_scale=0, jitter_rotate_deg=0, jitter_point=0
        )
        return reink(
            traces,
            np.random.default_rng(0),
            cfg,
            render,
            prep,
            symbols,
            bank if with_bank else None,
        )

    plain = draw(0.0, True)
    assert np.array_equal(draw(1.0, False), plain)
    swapped = draw(1.0, True)
    assert swapped.shape != plain.shape or not np.array_equal(swapped, plain)
    assert np.array_equal(draw(1.0, True), swapped)  # reproducible from the generator


def test_preview_grid(image: np.ndarray):
    sheet = preview_grid([image, image], ["a", "b"], build_augment(AugmentConfig(), 0), variants=2)
    assert sheet.dtype == np.uint8 and sheet.ndim == 2
    assert sheet.shape[1] == 3 * (480 + 4)
    assert sheet.min() == 0 and np.median(sheet) == 255  # dark ink on white for reading
