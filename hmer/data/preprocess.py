"""THE image path for training and inference: any picture of math -> a normalized ink image.

Output convention: uint8 ``(H, W)``, ink 255 on background 0, cropped to the ink plus a margin,
glyphs scaled to ``symbol_height`` pixels, within the size limits. A CROHME render
(:func:`hmer.data.inkml.render_traces` with matching settings) passes through nearly unchanged,
so what the model sees in training is what it sees on a user's photo.
"""

from __future__ import annotations

import contextlib
import io
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from hmer.errors import DataError

if TYPE_CHECKING:
    import PIL.Image
    import torch

#: Image files :func:`decode_image` is meant for (:func:`hmer.data.inkml.load_image` reads these
#: and ``.inkml``).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

#: Long side of the reduced copy used to estimate the background and the polarity.
_WORK_SIDE = 512


@dataclass(frozen=True)
class PreprocessConfig:
    """Targets of :func:`preprocess`; sizes in output pixels.

    ``symbol_height``: height a typical glyph gets (same meaning as ``RenderConfig``);
    ``scale_tolerance``: relative glyph-scale error left uncorrected (larger errors are reduced
    to it), so that images already at the right scale (renders) are not resampled and blurred;
    ``normalize_scale=False`` keeps the input scale (only the size limits then shrink it).
    ``stroke_width``: strokes 1+ px thicker or thinner than this (after rescaling) are eroded or
    dilated by whole pixels towards it, so a marker photo looks like a pen render (None: keep).
    ``margin``: blank border on each side; ``min_height``/``min_width``: smaller outputs are padded
    (keeps a lone ``-`` larger than the encoder's total stride);
    ``max_height``/``max_width``/``max_area``: limits, met by shrinking.
    ``max_input_pixels``: larger inputs are downscaled first, bounding time and memory.
    ``min_contrast``: gray levels ink must stand out from the background by, else "no ink".
    """

    symbol_height: float = 32.0
    stroke_width: float | None = 2.0
    scale_tolerance: float = 0.05
    normalize_scale: bool = True
    margin: int = 4
    min_height: int = 16
    min_width: int = 16
    max_height: int = 256
    max_width: int = 1024
    max_area: int = 256 * 1024
    max_input_pixels: int = 4096 * 3072
    min_contrast: int = 24


def to_grayscale(image: np.ndarray, max_pixels: int | None = None) -> np.ndarray:
    """Any image array -> uint8 ``(H, W)``, polarity unchanged.

    Accepts ``(H, W)``, ``(H, W, 1)``, RGB ``(H, W, 3)`` and RGBA ``(H, W, 4)`` of bool, any
    integer or float type; pixel values are read in their real range (:func:`to_uint8`).
    Transparent pixels are composited onto the color that contrasts with the opaque content
    (white behind dark ink). ``max_pixels``: area-downscale larger images first.
    """
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise DataError(f"expected an (H, W), (H, W, 3) or (H, W, 4) image, got {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise DataError(f"empty image {image.shape}")
    image = to_uint8(image)
    if max_pixels is not None:
        image = _shrink(image, max_pixels)
    if image.ndim == 2:
        return np.ascontiguousarray(image)
    gray = cv2.cvtColor(np.ascontiguousarray(image[:, :, :3]), cv2.COLOR_RGB2GRAY)
    if image.shape[2] == 4:
        alpha = image[:, :, 3]
        opaque = alpha > 127
        if not opaque.all():
            dark_ink = opaque.any() and gray[opaque].mean() < 128
            background = 255.0 if dark_ink else 0.0
            weight = alpha.astype(np.float32) / 255.0
            gray = (gray * weight + background * (1.0 - weight)).astype(np.uint8)
    return gray


#: Bit depths that wide integer pixels are stored at (a 16-bit container often holds 8-, 10-,
#: 12- or 14-bit data).
_DEPTHS = (8, 10, 12, 14, 16)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Pixels of any bool, integer or float type -> uint8 by their real range, rounded.

    The range is read from the finite pixels: ``[0, 1]`` for floats within it; ``[0, 2**d - 1]``
    for values within 16 bits, ``d`` the smallest of 8, 10, 12, 14, 16 bits that holds the
    brightest pixel (so 8-bit data in a 16-bit file keeps its levels and 12-bit data its
    contrast); ``[0, max]`` above 16 bits; ``[min, max]`` when some pixel is negative. A range
    by depth, not by the brightest pixel, keeps a dark or blank picture dark or blank. Bool is
    0 or 255. Non-finite pixels (NaN, infinities: broken pixels, not ink) take the picture's
    median level, its background.

    Raises:
        DataError: a pixel type that is not a number (complex, object, text), or no finite pixel.
    """
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.bool_:
        return image.astype(np.uint8) * 255
    floating = np.issubdtype(image.dtype, np.floating)
    if not (floating or np.issubdtype(image.dtype, np.integer)):
        raise DataError(f"pixels must be numbers, got {image.dtype}")
    if floating:
        finite = np.isfinite(image)
        low = float(np.min(image, where=finite, initial=np.inf))
        high = float(np.max(image, where=finite, initial=-np.inf))
        if low > high:
            raise DataError("no finite pixel: the image is all NaN or infinite")
    else:
        low, high = float(image.min()), float(image.max())
    if low < 0:
        bottom, top = low, high
    elif floating and high <= 1.0:
        bottom, top = 0.0, 1.0
    elif high < 2**16:
        bottom, top = 0.0, float(next(2**d - 1 for d in _DEPTHS if high < 2**d))
    else:
        bottom, top = 0.0, high
    scale = 255.0 / (top - bottom) if math.isfinite(top - bottom) and top > bottom else 0.0
    broken = (_median_level(image) - bottom) * scale if floating and not finite.all() else 0.0
    # float32 is precise enough for 256 levels; float64 pixels beyond its range stay float64.
    work = np.float64 if image.dtype.itemsize > 4 else np.float32
    with np.errstate(over="ignore", invalid="ignore"):
        levels = np.subtract(image, bottom, dtype=work)
        levels *= scale
        np.nan_to_num(levels, copy=False, nan=broken, posinf=broken, neginf=broken)
        np.rint(levels, out=levels)
        np.clip(levels, 0, 255, out=levels)
    return levels.astype(np.uint8)


def _median_level(image: np.ndarray) -> float:
    """The median of the finite pixels of a float picture (of an even sample of about 65,536
    of them when there are more): its background, ink being the minority."""
    step = max(1, math.isqrt(image.shape[0] * image.shape[1] // 2**16))
    sample = image[::step, ::step]
    finite = sample[np.isfinite(sample)]
    if not finite.size:  # none in the sample: the picture has some (to_uint8 checks)
        finite = image[np.isfinite(image)]
    return float(np.median(finite))


def fit_scale(
    width: float,
    height: float,
    pad: float,
    scale: float,
    max_height: int,
    max_width: int,
    max_area: int,
) -> float:
    """Largest ``s <= scale`` with ``(width*s + pad) x (height*s + pad)`` inside every limit.

    ``pad`` is what the output adds around the scaled content (margins, stroke thickness).
    """
    limits = [scale]
    if height > 0:
        limits.append((max_height - pad) / height)
    if width > 0:
        limits.append((max_width - pad) / width)
    # (w*s + pad) * (h*s + pad) <= max_area, a quadratic in s.
    qa, qb, qc = width * height, pad * (width + height), pad * pad - max_area
    if qa > 0:
        limits.append((-qb + math.sqrt(qb * qb - 4 * qa * qc)) / (2 * qa))
    elif qb > 0:
        limits.append(-qc / qb)
    # The small shrink keeps ceil() of the output size from overshooting a limit by rounding.
    return max(min(limits) * (1 - 1e-9), 0.0)


def _shrink(image: np.ndarray, max_pixels: int) -> np.ndarray:
    """Area-downscale a uint8 image so that it has at most ``max_pixels`` pixels."""
    height, width = image.shape[:2]
    if height * width <= max_pixels:
        return image
    factor = math.sqrt(max_pixels / (height * width))
    size = (max(1, int(width * factor)), max(1, int(height * factor)))
    return cv2.resize(np.ascontiguousarray(image), size, interpolation=cv2.INTER_AREA)


def _weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """The ``q``-quantile of ``values`` repeated ``weights`` times (weights sum > 0)."""
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, q * cumulative[-1])])


_LEVELS = np.arange(256, dtype=np.float64)


def _ink_map(gray: np.ndarray, min_contrast: int) -> np.ndarray:
    """Grayscale -> ink 255 on 0: polarity, lighting, background noise, contrast.

    Polarity: ink is the minority side of a median-filtered background. Lighting: the
    background (paper or board) is estimated on a reduced copy by a morphological filter wider
    than strokes, then divided out (dark ink: reflectance) or subtracted (bright ink). Noise: the
    background's spread (median absolute deviation) sets a floor removed from every pixel. The
    result is stretched so that the ink's strong pixels reach 255. On a clean render (uniform
    background, ink already 255) every step is the identity, so anti-aliasing survives.
    """
    height, width = gray.shape
    factor = min(1.0, _WORK_SIDE / max(height, width))
    small = gray
    if factor < 1.0:
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        small = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    # Polarity from the residual to a median-filtered background, so lighting gradients don't
    # count as ink: more strongly negative than positive deviations means dark ink.
    residual = small.astype(np.int16) - cv2.medianBlur(small, 31)
    spread = float(np.median(np.abs(residual)))
    band = max(8.0, 4.0 * 1.4826 * spread)
    dark_ink = np.count_nonzero(residual < -band) > np.count_nonzero(residual > band)
    # Closing erases dark strokes (leaving paper), opening erases bright ones (leaving board);
    # the window must be wider than strokes: a sixth of the short side for close-up photos.
    side = max(15, min(small.shape) // 6)
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (side, side))
    operation = cv2.MORPH_CLOSE if dark_ink else cv2.MORPH_OPEN
    background = cv2.blur(cv2.morphologyEx(small, operation, kernel), (side, side))
    if background.shape != gray.shape:
        background = cv2.resize(background, (width, height), interpolation=cv2.INTER_LINEAR)
    if dark_ink:
        ink = 255 - cv2.divide(gray, np.maximum(background, 1), scale=255)
    else:
        ink = cv2.subtract(gray, background)
    histogram = np.bincount(ink.ravel(), minlength=256).astype(np.float64)
    median = _weighted_quantile(_LEVELS, histogram, 0.5)
    floor = median + 4 * 1.4826 * _weighted_quantile(np.abs(_LEVELS - median), histogram, 0.5)
    above = np.where(floor < _LEVELS, histogram, 0.0)
    level = _weighted_quantile(_LEVELS, above, 0.9) if above.sum() > 0 else floor
    if level - floor < min_contrast:
        raise DataError("no ink found: the image is blank or has too little contrast")
    table = np.clip((_LEVELS - floor) * (255.0 / (level - floor)), 0, 255)
    return cv2.LUT(ink, table.astype(np.uint8))


def _stroke_width(binary: np.ndarray, contours: Sequence[np.ndarray]) -> float:
    """Mean stroke width of a binary ink mask: area over half the contour length (0 if none)."""
    perimeter = sum(cv2.arcLength(c, True) for c in contours)
    return 2.0 * float(np.count_nonzero(binary)) / perimeter if perimeter > 0 else 0.0


def glyph_height(ink: np.ndarray) -> float:
    """Robust height of a typical glyph in an ink-255-on-0 image, in pixels, stroke excluded.

    The image analogue of :func:`hmer.data.inkml.ink_symbol_height`, with connected components
    for traces: components shorter than half the median component height (dots, minus signs,
    bars) are left out and the median of the rest is taken, bounded below by half the median
    component width; the stroke width (ink area over half the contour length) is subtracted,
    since trace extents run along stroke centres. Returns 0.0 for an image without ink.
    """
    binary = (ink > 127).astype(np.uint8)
    contours, hierarchy = cv2.findContours(binary, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return 0.0
    # Outer contours (no parent) bound the 8-connected components.
    boxes = np.array(
        [cv2.boundingRect(c) for c, h in zip(contours, hierarchy[0], strict=True) if h[3] < 0],
        np.float64,
    )
    heights, widths = boxes[:, 3], boxes[:, 2]
    tall = heights[heights >= 0.5 * np.median(heights)]
    extent = max(float(np.median(tall)), 0.5 * float(np.median(widths)))
    return max(extent - _stroke_width(binary, contours), 0.5 * extent)


def _normalize_stroke(ink: np.ndarray, target: float) -> np.ndarray:
    """Erode or dilate by whole pixels so that the mean stroke width gets within 1 px of
    ``target``; unchanged if erosion would erase the ink. Returns a tight crop."""
    binary = (ink > 127).astype(np.uint8)
    contours, _ = cv2.findContours(binary, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    excess = round(_stroke_width(binary, contours) - target)
    if excess == 0 or not contours:
        return ink
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (abs(excess) + 1, abs(excess) + 1))
    if excess > 0:
        thinner = cv2.erode(ink, kernel)
        return thinner if thinner.max() > 127 else ink
    grown = cv2.dilate(
        cv2.copyMakeBorder(ink, *(-excess,) * 4, cv2.BORDER_CONSTANT, value=0), kernel
    )
    rows = np.flatnonzero(grown.any(axis=1))
    cols = np.flatnonzero(grown.any(axis=0))
    return grown[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _crop_to_ink(ink: np.ndarray) -> np.ndarray:
    """Crop to the real ink, dropping background specks the noise floor let through.

    Real ink is where the map is strong (> 127): its connected components of 3+ pixels, plus
    smaller ones (dots) within one typical component height of those. Weak pixels count only
    in the anti-aliased halo (2 px) of kept components: elsewhere they are noise, set to 0.
    """
    strong = (ink > 127).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(strong, connectivity=8)
    if count <= 1:
        raise DataError("no ink found: no stroke stands out of the background")
    stats = stats[1:]
    solid = stats[:, cv2.CC_STAT_AREA] >= 3
    if not solid.any():
        solid = stats[:, cv2.CC_STAT_AREA] == stats[:, cv2.CC_STAT_AREA].max()
    reach = float(np.median(stats[solid, cv2.CC_STAT_HEIGHT]))
    left, top = stats[solid, 0].min() - reach, stats[solid, 1].min() - reach
    right = (stats[solid, 0] + stats[solid, 2]).max() + reach
    bottom = (stats[solid, 1] + stats[solid, 3]).max() + reach
    centers_x = stats[:, 0] + stats[:, 2] / 2
    centers_y = stats[:, 1] + stats[:, 3] / 2
    near = (left <= centers_x) & (centers_x <= right) & (top <= centers_y) & (centers_y <= bottom)
    keep = np.zeros(count, np.uint8)  # per label; label 0 is the background
    keep[1:] = solid | near
    halo = cv2.dilate(keep[labels], cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    ink = np.where(halo > 0, ink, 0).astype(np.uint8)
    rows = np.flatnonzero(ink.any(axis=1))
    cols = np.flatnonzero(ink.any(axis=0))
    return ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def preprocess(image: np.ndarray, cfg: PreprocessConfig = PreprocessConfig()) -> np.ndarray:
    """Any picture of one expression -> uint8 ``(H, W)``, ink 255 on 0, normalized.

    Steps: grayscale (:func:`to_grayscale`); downscale inputs above ``max_input_pixels``;
    ink map (polarity, lighting, noise, contrast); crop to the ink (specks dropped); rescale so
    :func:`glyph_height` is within ``scale_tolerance`` of ``symbol_height``, shrinking
    further if the size limits demand; strokes eroded/dilated to about ``stroke_width``; margin;
    pad to the minimum size.

    Raises:
        DataError: not an image, or no ink (blank / too little contrast).
    """
    gray = to_grayscale(image, cfg.max_input_pixels)
    ink = _crop_to_ink(_ink_map(gray, cfg.min_contrast))
    height, width = ink.shape
    scale = 1.0
    if cfg.normalize_scale:
        glyph = glyph_height(ink)
        if glyph > 0:
            # Dead zone: glyphs within the tolerance keep their scale (no resampling blur), the
            # others are brought to its edge. Continuous, so near-identical inputs stay alike.
            error = math.log(cfg.symbol_height / glyph)
            excess = max(0.0, abs(error) - math.log1p(cfg.scale_tolerance))
            scale = math.exp(math.copysign(excess, error))
    pad = 2 * cfg.margin
    scale = min(
        scale, fit_scale(width, height, pad, 1e9, cfg.max_height, cfg.max_width, cfg.max_area)
    )
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if size != (width, height):
        method = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
        ink = cv2.resize(ink, size, interpolation=method)
    if cfg.stroke_width is not None:
        ink = _normalize_stroke(ink, cfg.stroke_width)
        height, width = ink.shape
        # Dilation may have grown the ink past a limit by a pixel or two.
        fit = fit_scale(width, height, pad, 1.0, cfg.max_height, cfg.max_width, cfg.max_area)
        if fit < 1.0:
            size = (max(1, int(width * fit)), max(1, int(height * fit)))
            ink = cv2.resize(ink, size, interpolation=cv2.INTER_AREA)
    height, width = ink.shape
    extra_h = max(0, cfg.min_height - height - pad)
    extra_w = max(0, cfg.min_width - width - pad)
    return cv2.copyMakeBorder(
        ink,
        cfg.margin + extra_h // 2,
        cfg.margin + extra_h - extra_h // 2,
        cfg.margin + extra_w // 2,
        cfg.margin + extra_w - extra_w // 2,
        cv2.BORDER_CONSTANT,
        value=0,
    )


#: Most pixels an image file is decoded to: 8192 x 6144, four times the default
#: ``max_input_pixels``. It is checked on the header, before any pixel is decoded, so what a file
#: costs in memory is bounded whatever its header claims or its data expand to. A JPEG above it
#: is decoded at 1/2 or 1/4 of its size instead (libjpeg's DCT scaling), so JPEGs up to 16 times
#: larger are read (a 200-megapixel photo is 4 times larger); any other picture above it is
#: refused. (Decoding time grows with the JPEG's full size: 1/8 would let 64 times larger
#: headers in, and seconds of decoding each.)
MAX_DECODED_PIXELS = 8192 * 6144

#: The reductions a JPEG may be decoded at (``Image.draft``), and Pillow's names of JPEG files
#: (MPO: a phone's JPEG with a second picture inside).
_JPEG_SCALES = (2, 4)
_JPEG_FORMATS = ("JPEG", "MPO")

#: PIL modes whose pixels numpy reads as they are and :func:`to_grayscale` accepts: 1-bit, 8-bit
#: gray and color, 16-bit and 32-bit integer gray, float gray. Others (palette, CMYK, LA, ...)
#: are converted to RGB, or RGBA when they carry transparency.
_ARRAY_MODES = frozenset({"1", "L", "RGB", "RGBA", "I;16", "I;16L", "I;16B", "I;16N", "I", "F"})

#: The EXIF tag that says how a camera's stored pixels must be turned to stand upright.
EXIF_ORIENTATION = 0x0112

#: EXIF orientation -> the turn that stands the stored pixels ``(H, W[, C])`` upright, as
#: ``PIL.ImageOps.exif_transpose`` turns them (which fails on a broken EXIF block), in numpy.
_UPRIGHT: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    2: np.fliplr,
    3: lambda a: np.rot90(a, 2),
    4: np.flipud,
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a, 2).swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}

_PILLOW_LIMIT = threading.Lock()


@contextlib.contextmanager
def _without_pillow_limit() -> Iterator[None]:
    """Pillow's own decompression-bomb check (``Image.MAX_IMAGE_PIXELS``, which refuses
    headers above 179 Mpx and warns above 89 Mpx) off while hmer opens a header.

    hmer's budget, checked on the same header right after, is stricter for everything decoded
    in full, and lets a large JPEG through to a reduced decode. The global is restored at once;
    the lock keeps two hmer threads from restoring each other's value.
    """
    from PIL import Image

    with _PILLOW_LIMIT:
        before, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = before


def pil_to_array(
    image: PIL.Image.Image, max_pixels: int = MAX_DECODED_PIXELS, source: str | Path | None = None
) -> np.ndarray:
    """A PIL image, lazily opened or loaded -> an array :func:`to_grayscale` accepts: bool (1-bit),
    uint8 ``(H, W)`` / RGB ``(H, W, 3)`` / RGBA ``(H, W, 4)``, or ``(H, W)`` uint16, int32 or
    float32 (16-bit, 32-bit and float gray). Palette, CMYK and other modes become RGB, or RGBA
    when they carry transparency.

    A lazily opened image is decoded only if its header size is within ``max_pixels``, a JPEG
    at the smallest DCT reduction (1/2, 1/4) that brings it there (:data:`MAX_DECODED_PIXELS`).
    An image already loaded is converted whatever its size (its pixels are in memory already).

    Raises:
        DataError: an image above the budget, or pixel data that do not decode (naming
            ``source``).
    """
    if getattr(image, "tile", None):  # lazily opened: no pixel decoded yet
        _fit_budget(image, max_pixels, source)
    try:
        image.load()
        if image.mode not in _ARRAY_MODES:
            transparent = {"A", "a"} & set(image.getbands()) or "transparency" in image.info
            image = image.convert("RGBA" if transparent else "RGB")
        return np.asarray(image)
    except Exception as error:  # Pillow's decoders raise any type on bad bytes
        raise _corrupt(error, source) from None


def _fit_budget(image: PIL.Image.Image, max_pixels: int, source: str | Path | None) -> None:
    """Have a lazily opened ``image`` decode to at most ``max_pixels``: a JPEG at the smallest
    DCT reduction that fits; DataError when nothing fits."""
    width, height = image.size
    jpeg = image.format in _JPEG_FORMATS
    if width * height > max_pixels and jpeg:
        scale = next(
            (s for s in _JPEG_SCALES if math.ceil(width / s) * math.ceil(height / s) <= max_pixels),
            None,
        )
        # A header Pillow cannot reduce (any error of its draft) keeps its size: refused below.
        with contextlib.suppress(Exception):
            if scale is not None:
                image.draft(None, (max(1, width // scale), max(1, height // scale)))
    if image.size[0] * image.size[1] > max_pixels:
        reduced = f" (a JPEG: {16 * max_pixels:,}, read reduced)" if jpeg else ""
        raise DataError(
            f"image too large: {width} x {height} pixels, hmer decodes at most "
            f"{max_pixels:,}{reduced}",
            source,
        )


def _corrupt(error: Exception, source: str | Path | None) -> DataError:
    detail = str(error) or type(error).__name__
    return DataError(f"cannot decode image (corrupt: {detail})", source)


def _orientation(image: PIL.Image.Image) -> int:
    """The EXIF orientation (1 to 8) of an opened image; 1 (as stored) when there is none."""
    try:
        value = image.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # a broken EXIF block (any error of Pillow's parser): keep the pixels
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def decode_image(
    data: bytes, source: str | Path = "<bytes>", max_pixels: int = MAX_DECODED_PIXELS
) -> np.ndarray:
    """Encoded image bytes (png, jpg, bmp, tiff, webp, ...) -> the picture as stored, upright:
    an array of :func:`pil_to_array` (what :func:`hmer.data.inkml.load_image` returns).

    Memory is bounded by ``max_pixels``, checked on the header before any pixel is decoded.
    Multi-frame files (animations, TIFF pages) give their first frame. A phone photo whose EXIF
    orientation says its pixels are stored turned or mirrored is returned upright.

    Raises:
        DataError: empty, undecodable or too large (naming ``source``).
    """
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise DataError("empty: no image data", source)
    try:
        with _without_pillow_limit():
            image = Image.open(io.BytesIO(data))  # reads the header only
    except UnidentifiedImageError:
        raise DataError("cannot decode image (corrupt or unsupported format)", source) from None
    except Exception as error:  # Pillow's header parsers raise any type on bad bytes
        raise _corrupt(error, source) from None
    with image:
        _fit_budget(image, max_pixels, source)  # first: reading a PNG's EXIF decodes it
        turn = _UPRIGHT.get(_orientation(image))
        array = pil_to_array(image, max_pixels, source)
    return array if turn is None else np.ascontiguousarray(turn(array))


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 ``(H, W)`` ink 255 on 0 -> float32 tensor ``(1, H, W)`` in [0, 1], ink = 1."""
    import torch

    # In numpy: torch would spread this small conversion over its intra-op threads, which costs
    # milliseconds outside DataLoader workers (measured 4 ms vs 0.1 ms for 100x340 px).
    return torch.from_numpy(np.divide(image, 255.0, dtype=np.float32)[None])
