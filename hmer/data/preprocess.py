"""THE image path for training and inference: any picture of math -> a normalized ink image.

Output convention: uint8 ``(H, W)``, ink 255 on background 0, cropped to the ink plus a margin,
glyphs scaled to ``symbol_height`` pixels, within the size limits. A CROHME render
(:func:`hmer.data.inkml.render_traces` with matching settings) passes through nearly unchanged,
so what the model sees in training is what it sees on a user's photo.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from hmer.errors import DataError

if TYPE_CHECKING:
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

    Accepts ``(H, W)``, ``(H, W, 1)``, RGB ``(H, W, 3)`` and RGBA ``(H, W, 4)``; uint8, uint16,
    bool, or float (``[0, 1]`` if its maximum is <= 1, else ``[0, 255]``). Transparent pixels are
    composited onto the color that contrasts with the opaque content (white behind dark ink).
    ``max_pixels``: area-downscale larger images first (before any float copy is made).
    """
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise DataError(f"expected an (H, W), (H, W, 3) or (H, W, 4) image, got {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise DataError(f"empty image {image.shape}")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype == np.bool_:
        image = image.astype(np.uint8) * 255
    elif np.issubdtype(image.dtype, np.floating):
        finite = np.nan_to_num(image.astype(np.float32, copy=False))
        scale = 255.0 if finite.max() <= 1.0 else 1.0
        image = np.clip(finite * scale, 0, 255).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
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


#: The EXIF tag that says how a camera's stored pixels must be turned to stand upright.
EXIF_ORIENTATION = 0x0112


def exif_orientation(data: bytes) -> int:
    """The EXIF orientation (1 to 8) of encoded image bytes; 1 (as stored) when there is none."""
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only
            value = image.getexif().get(EXIF_ORIENTATION, 1)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return 1  # not a format PIL knows: OpenCV decides below
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def decode_image(data: bytes, source: str | Path = "<bytes>") -> np.ndarray:
    """Encoded image bytes -> array as stored (uint8/uint16 ``(H, W)``, RGB or RGBA, as
    :func:`hmer.data.inkml.load_image` returns it); DataError naming ``source``.

    A phone photo whose EXIF orientation says its pixels are stored turned or mirrored is
    returned upright (by OpenCV, which applies the tag unless asked for the pixels unchanged;
    any alpha channel is then dropped, photos have none).
    """
    if not data:  # OpenCV asserts on an empty buffer
        raise DataError("empty: no image data", source)
    upright = exif_orientation(data) == 1
    flags = cv2.IMREAD_UNCHANGED if upright else cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR
    array = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    if array is None:
        raise DataError("cannot decode image (corrupt or unsupported format)", source)
    if array.ndim == 3:
        code = cv2.COLOR_BGRA2RGBA if array.shape[2] == 4 else cv2.COLOR_BGR2RGB
        array = cv2.cvtColor(array, code)
    return array


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 ``(H, W)`` ink 255 on 0 -> float32 tensor ``(1, H, W)`` in [0, 1], ink = 1."""
    import torch

    # In numpy: torch would spread this small conversion over its intra-op threads, which costs
    # milliseconds outside DataLoader workers (measured 4 ms vs 0.1 ms for 100x340 px).
    return torch.from_numpy(np.divide(image, 255.0, dtype=np.float32)[None])
