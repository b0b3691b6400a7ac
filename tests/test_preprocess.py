"""The one image path: whatever the picture, ink comes out 255 on 0, cropped, at glyph scale."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest
import torch

from hmer.data.inkml import RenderConfig, load_image, read_file, render_traces
from hmer.data.preprocess import (
    PreprocessConfig,
    decode_image,
    glyph_height,
    preprocess,
    to_grayscale,
    to_tensor,
    to_uint8,
)
from hmer.errors import DataError

if TYPE_CHECKING:
    import PIL.Image


def expression(count: int = 5, size: float = 10.0) -> list[np.ndarray]:
    """Digit-like ink: rings and hooked bars of height ``size``."""
    t = np.linspace(0, 2 * math.pi, 24)
    traces = []
    for i in range(count):
        x0 = i * size * 1.2
        if i % 2 == 0:
            traces.append(
                np.stack([x0 + size * 0.35 * (1 + np.cos(t)), size * 0.5 * (1 + np.sin(t))], 1)
            )
        else:
            traces.append(np.array([[x0 + 2, 2], [x0 + 4, 0], [x0 + 4, size]]))
    return traces


@pytest.fixture(scope="module")
def render() -> np.ndarray:
    return render_traces(expression())


def paper(render: np.ndarray) -> np.ndarray:
    """The render as dark ink on white paper."""
    return 255 - render


def similar(a: np.ndarray, b: np.ndarray, tolerance: float = 0.15) -> bool:
    """Same size within ``tolerance``, and ``a``'s ink mostly on (slightly dilated) ink of ``b``
    once resized onto each other."""
    if not all(abs(x / y - 1) <= tolerance for x, y in zip(a.shape, b.shape, strict=True)):
        return False
    b = cv2.resize(b, a.shape[::-1], interpolation=cv2.INTER_AREA)
    ink_a, ink_b = a > 96, cv2.dilate((b > 96).astype(np.uint8), np.ones((3, 3))) > 0
    return np.count_nonzero(ink_a & ink_b) >= 0.85 * np.count_nonzero(ink_a)


def test_a_render_passes_nearly_unchanged(render: np.ndarray):
    out = preprocess(render)
    assert out.dtype == np.uint8 and out.ndim == 2
    assert abs(out.shape[0] - render.shape[0]) <= 2 and abs(out.shape[1] - render.shape[1]) <= 2
    assert similar(out, render, tolerance=0.05)
    assert np.abs(out.astype(int).sum() - render.astype(int).sum()) < 0.05 * render.sum()


@pytest.mark.parametrize(
    "variant",
    ["inverted", "rgb", "colored", "rgba", "uint16", "float", "bool", "channel"],
)
def test_ink_is_255_on_0_whatever_the_polarity_color_or_dtype(render: np.ndarray, variant: str):
    ink = render.astype(np.float32) / 255.0
    if variant == "inverted":
        image = paper(render)
    elif variant == "rgb":
        image = np.repeat(paper(render)[:, :, None], 3, axis=2)
    elif variant == "colored":  # blue ink on yellowish paper
        ink3 = ink[:, :, None]
        image = (np.array([240, 230, 170]) * (1 - ink3) + np.array([20, 40, 150]) * ink3).astype(
            np.uint8
        )
    elif variant == "rgba":  # black ink on a transparent background
        image = np.zeros((*render.shape, 4), np.uint8)
        image[:, :, 3] = render
    elif variant == "uint16":
        image = paper(render).astype(np.uint16) * 257
    elif variant == "float":
        image = 1.0 - ink
    elif variant == "bool":
        image = render > 127
    else:
        image = render[:, :, None]
    out = preprocess(image)
    assert out.dtype == np.uint8 and out.ndim == 2
    assert out.max() == 255
    assert np.count_nonzero(out) < 0.5 * out.size  # ink is the minority, background 0
    assert out[0].max() == 0 and out[-1].max() == 0
    assert similar(out, preprocess(render), tolerance=0.1)


def lit_and_noisy(render: np.ndarray, seed: int = 0) -> np.ndarray:
    """Dark ink on paper under a strong lighting gradient, with sensor noise."""
    height, width = render.shape
    ys, xs = np.mgrid[0:height, 0:width]
    light = 0.5 + 0.5 * (xs / width) * (0.6 + 0.4 * ys / height)
    noise = np.random.default_rng(seed).normal(0, 6, render.shape)
    image = 235 * light * (1 - 0.8 * render / 255.0) + noise
    return np.clip(image, 0, 255).astype(np.uint8)


def test_uneven_lighting_and_noise(render: np.ndarray):
    framed = cv2.copyMakeBorder(render, 60, 60, 150, 150, cv2.BORDER_CONSTANT, value=0)
    out = preprocess(lit_and_noisy(framed))
    assert similar(out, preprocess(render))


def test_upscaled_copies_come_back_to_the_same_size(render: np.ndarray):
    big = cv2.resize(paper(render), None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)
    small_glyphs = render_traces(expression(), RenderConfig(symbol_height=14.0))
    base = preprocess(render)
    assert similar(base, preprocess(big))
    assert similar(base, preprocess(small_glyphs))  # thicker strokes once enlarged
    assert glyph_height(preprocess(big)) == pytest.approx(32.0, rel=0.08)


def test_thick_strokes_are_thinned_to_the_target_width(render: np.ndarray):
    thick = render_traces(expression(), RenderConfig(stroke_width=6.0))
    mass = preprocess(thick).astype(np.int64).sum()
    assert mass == pytest.approx(preprocess(render).astype(np.int64).sum(), rel=0.35)
    kept = preprocess(thick, PreprocessConfig(stroke_width=None)).astype(np.int64).sum()
    assert kept > 2 * mass
    thin = render_traces(expression(), RenderConfig(stroke_width=1.0))
    assert preprocess(thin).astype(np.int64).sum() > 1.3 * thin.astype(np.int64).sum()


def test_crop_margin_and_minimum_size():
    cfg = PreprocessConfig(margin=6, min_height=16, min_width=40)
    canvas = np.zeros((300, 400), np.uint8)
    cv2.line(canvas, (100, 150), (130, 150), 255, 2, cv2.LINE_AA)  # a lone minus sign
    out = preprocess(canvas, cfg)
    assert out.shape[0] >= 16 and out.shape[1] >= 40
    assert out.shape[0] < 30
    rows = np.flatnonzero(out.any(axis=1))
    cols = np.flatnonzero(out.any(axis=0))
    assert rows[0] >= 6 and cols[0] >= 6 and cols[-1] <= out.shape[1] - 7


def test_size_limits_are_met_by_shrinking():
    cfg = PreprocessConfig(max_height=64, max_width=256, max_area=64 * 200)
    out = preprocess(render_traces(expression(30)), cfg)
    assert out.shape[0] <= 64 and out.shape[1] <= 256 and out.size <= 64 * 200
    # Thin strokes at the width limit get dilated: still within it.
    thin = preprocess(render_traces(expression(150), RenderConfig(stroke_width=1.0)))
    assert thin.shape[1] <= 1024


def test_scale_normalization_can_be_turned_off(render: np.ndarray):
    big = cv2.resize(render, None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR)
    kept = preprocess(big, PreprocessConfig(normalize_scale=False))
    assert abs(kept.shape[0] - (big.shape[0] - 2 * 4)) <= 2  # margins 8 -> 4, glyphs kept
    assert preprocess(big).shape[0] < 0.7 * kept.shape[0]


def test_huge_photo_is_handled_with_a_bounded_working_size():
    photo = np.full((6000, 8000, 3), 230, np.uint8)
    cv2.putText(photo, "x+2", (800, 3600), cv2.FONT_HERSHEY_SIMPLEX, 40, (30, 30, 60), 70)
    out = preprocess(photo)
    assert out.shape[0] <= 256 and out.shape[1] <= 1024
    assert glyph_height(out) == pytest.approx(32.0, rel=0.1)


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((60, 200), np.uint8),
        np.full((60, 200), 255, np.uint8),
        np.full((60, 200, 3), 128, np.uint8),
        np.clip(np.random.default_rng(0).normal(128, 10, (60, 200)), 0, 255).astype(np.uint8),
        np.tile(np.linspace(0, 255, 200), (60, 1)).astype(np.uint8),
    ],
    ids=["black", "white", "gray", "noise", "gradient"],
)
def test_blank_images_are_a_clear_error(image: np.ndarray):
    with pytest.raises(DataError, match="no ink"):
        preprocess(image)


@pytest.mark.parametrize("shape", [(0, 10), (10, 10, 2), (4, 4, 4, 4)])
def test_non_images_are_data_errors(shape):
    with pytest.raises(DataError):
        to_grayscale(np.zeros(shape, np.uint8))


@pytest.mark.parametrize(
    ("pixels", "levels"),
    [
        (np.array([0, 7, 255], np.uint16), [0, 7, 255]),  # 8-bit data in a 16-bit file
        (np.array([0, 2048, 4095], np.uint16), [0, 128, 255]),  # 12-bit data
        (np.array([0, 257 * 100, 65535], np.uint16), [0, 100, 255]),
        (np.array([0, 1000, 70000], np.int32), [0, 4, 255]),  # beyond 16 bits: up to the max
        (np.array([0.0, 0.5, 1.0], np.float32), [0, 128, 255]),
        (np.array([0.0, 100.0, 255.0], np.float64), [0, 100, 255]),
        (np.array([-1.0, 0.0, 1.0], np.float32), [0, 128, 255]),  # negatives: min to max
        # Broken pixels take the median level: 0.6 of [0.2, 1.0].
        (np.array([0.2, np.nan, np.inf, -np.inf, 1.0], np.float32), [51, 153, 153, 153, 255]),
        (np.array([False, True]), [0, 255]),
    ],
)
def test_pixels_are_read_in_their_real_range(pixels: np.ndarray, levels: list[int]):
    assert to_uint8(pixels[None]).tolist() == [levels]


@pytest.mark.parametrize(
    "pixels", [np.full((2, 2), np.nan), np.zeros((2, 2), complex), np.array([["a", "b"]])]
)
def test_pixels_that_are_not_finite_numbers_are_data_errors(pixels: np.ndarray):
    with pytest.raises(DataError):
        to_uint8(pixels)


def test_deep_and_float_pictures_read_like_their_8_bit_original(render: np.ndarray):
    """16-bit pictures whose values all lie below 256 are not blank, and one infinite or NaN
    pixel does not blank a float picture."""
    expected = preprocess(paper(render))
    assert np.array_equal(preprocess(paper(render).astype(np.uint16)), expected)
    floats = paper(render).astype(np.float32) / 255
    floats[0, 0], floats[-1, -1] = np.inf, np.nan
    assert similar(preprocess(floats), expected)


def test_to_tensor_is_float_ink_one(render: np.ndarray):
    tensor = to_tensor(render)
    assert tensor.shape == (1, *render.shape) and tensor.dtype == torch.float32
    assert tensor.max().item() == 1.0 and tensor.min().item() == 0.0


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".tiff", ".webp"])
def test_load_image_reads_common_formats(tmp_path: Path, render: np.ndarray, suffix: str):
    path = tmp_path / f"img{suffix}"
    assert cv2.imwrite(str(path), cv2.cvtColor(paper(render), cv2.COLOR_GRAY2BGR))
    image = load_image(path)
    assert image.shape[:2] == render.shape
    assert similar(preprocess(image), preprocess(render))


def _saved(image: PIL.Image.Image, path: Path) -> Path:
    image.save(path)
    return path


#: Pictures in every PIL mode users' files come in, made from an 8-bit paper picture.
MODES = {
    "1-bit": lambda im, d: _saved(im.point(lambda v: 255 * (v > 127)).convert("1"), d / "a.png"),
    "palette": lambda im, d: _saved(im.convert("P"), d / "a.png"),
    "palette+transparency": lambda im, d: _saved(_transparent_palette(im), d / "a.png"),
    "LA": lambda im, d: _saved(im.convert("LA"), d / "a.png"),
    "RGBA": lambda im, d: _saved(im.convert("RGBA"), d / "a.webp"),
    "CMYK": lambda im, d: _saved(im.convert("CMYK"), d / "a.jpg"),
    "CMYK tiff": lambda im, d: _saved(im.convert("CMYK"), d / "a.tiff"),
    "I;16": lambda im, d: _saved(im.convert("I;16"), d / "a.png"),
    "I": lambda im, d: _saved(im.convert("I"), d / "a.tiff"),
    "F": lambda im, d: _saved(im.convert("F"), d / "a.tiff"),
}


def _transparent_palette(image: PIL.Image.Image) -> PIL.Image.Image:
    """The paper picture as a palette image (gray level i: index i) whose white is transparent."""
    palette = image.convert("P")
    palette.info["transparency"] = 255
    return palette


@pytest.mark.parametrize("mode", MODES)
def test_every_pil_mode_reads_like_the_8_bit_picture(tmp_path: Path, render: np.ndarray, mode: str):
    from PIL import Image

    path = MODES[mode](Image.fromarray(paper(render)), tmp_path)
    assert similar(preprocess(load_image(path)), preprocess(render))


def _encoded(image: np.ndarray, suffix: str) -> bytes:
    ok, data = cv2.imencode(suffix, image)
    assert ok
    return data.tobytes()


def test_the_pixel_budget_is_checked_on_the_header_before_decoding(render: np.ndarray):
    """Above the budget a PNG is refused (naming it) and a JPEG decoded at a reduced size that
    fits (1/2 or 1/4), whatever Pillow's own limit says; that limit is left as it was."""
    from PIL import Image

    picture = cv2.resize(paper(render), (400, 300))
    with pytest.raises(DataError, match="too large: 400 x 300") as caught:
        decode_image(_encoded(picture, ".png"), "big.png", max_pixels=20_000)
    assert caught.value.source == "big.png"
    reduced = decode_image(_encoded(picture, ".jpg"), "big.jpg", max_pixels=20_000)
    assert reduced.shape == (75, 100)  # 1/2 would be 30,000 pixels
    with pytest.raises(DataError, match="too large"):
        decode_image(_encoded(picture, ".jpg"), "big.jpg", max_pixels=1_000)
    before = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = 1_000  # Pillow would call 120,000 pixels a bomb
        assert decode_image(_encoded(picture, ".png")).shape == (300, 400)
        assert Image.MAX_IMAGE_PIXELS == 1_000
    finally:
        Image.MAX_IMAGE_PIXELS = before


def test_what_is_not_an_image_file_is_refused_before_reading(tmp_path: Path):
    folder = tmp_path / "folder.png"
    folder.mkdir()
    with pytest.raises(DataError, match="a folder"):
        load_image(folder)
    pipe = tmp_path / "pipe.png"
    os.mkfifo(pipe)  # opening it would wait for a writer forever
    with pytest.raises(DataError, match="a device, pipe or socket"):
        load_image(pipe)
    large = tmp_path / "large.png"
    large.write_bytes(b"\x89PNG" + bytes(100))
    with pytest.raises(DataError, match="too large") as caught:
        read_file(large, max_bytes=50)
    assert caught.value.source == str(large)


def test_load_image_keeps_rgba_order_and_alpha(tmp_path: Path, render: np.ndarray):
    rgba = np.zeros((*render.shape, 4), np.uint8)
    rgba[:, :, 0] = 200  # red ink
    rgba[:, :, 3] = render
    path = tmp_path / "ink.png"
    cv2.imwrite(str(path), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    loaded = load_image(path)
    assert loaded.shape == (*render.shape, 4) and loaded[:, :, 0].max() == 200
    assert similar(preprocess(loaded), preprocess(render))


# How a camera stores an upright picture under each EXIF orientation: the inverse of the turn
# that the tag asks a viewer to apply (PIL's names).
STORED = {
    2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE",
    6: "ROTATE_90", 7: "TRANSVERSE", 8: "ROTATE_270",
}  # fmt: skip


@pytest.mark.parametrize("orientation", range(1, 9))
def test_phone_photos_stand_upright_whatever_their_exif_orientation(
    tmp_path: Path, render: np.ndarray, orientation: int
):
    from PIL import Image, ImageOps

    upright = Image.fromarray(paper(render)).convert("RGB")
    stored = upright
    if orientation in STORED:
        stored = upright.transpose(Image.Transpose[STORED[orientation]])
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "photo.jpg"
    stored.save(path, exif=exif.tobytes(), quality=95)
    assert ImageOps.exif_transpose(Image.open(path)).size == upright.size  # a well-made photo
    image = load_image(path)
    assert image.shape[:2] == render.shape  # upright: as wide as the formula
    assert similar(preprocess(image), preprocess(render))


def test_load_image_renders_inkml(tmp_path: Path):
    points = ", ".join(f"{x} {y}" for x, y in [(0, 0), (5, 10), (10, 0)])
    path = tmp_path / "v.inkml"
    path.write_text(f"<ink><trace>{points}</trace></ink>")
    image = load_image(path)
    assert image.dtype == np.uint8 and image.max() == 255


def test_load_image_errors_name_the_file(tmp_path: Path):
    missing = tmp_path / "missing.png"
    with pytest.raises(DataError, match="cannot read") as caught:
        load_image(missing)
    assert str(missing) in str(caught.value)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty") as caught:
        load_image(empty)
    assert caught.value.source == str(empty)
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DataError, match="cannot decode") as caught:
        load_image(corrupt)
    assert caught.value.source == str(corrupt)
