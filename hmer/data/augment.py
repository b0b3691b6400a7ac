"""Training-time augmentation of ink images (and, optionally, of online ink before rendering).

Images follow the preprocess convention: uint8 ``(H, W)``, ink 255 on 0, cropped to the ink plus
a margin; augmented images keep it (the result is re-cropped), so they look like what
:func:`hmer.data.preprocess.preprocess` produces from a differently written expression.

albumentations is imported only when an enabled augmenter is built: machines that only run
inference need not have it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from hmer.data.inkml import RenderConfig, Symbol, ink_symbol_height, render_traces
from hmer.data.preprocess import PreprocessConfig
from hmer.data.preprocess import preprocess as preprocess_image


@dataclass
class AugmentConfig:
    """Probabilities and magnitudes. Pixel sizes refer to the preprocessed image.

    Geometry (albumentations ``Affine``, with probability ``affine_p``): uniform scale in
    ``[scale_min, scale_max]``, rotation up to ``rotate_deg``, horizontal shear (slant) up to
    ``shear_deg``. Elastic (``elastic_p``): a smooth random displacement field, ``elastic_std``
    px at nodes ``elastic_cell`` px apart. Stroke thickness (``thickness_p``): grayscale
    dilation by 1..``thicken_max`` px or erosion by 1..``thin_max`` px, equally likely.
    Blur (``blur_p``): Gaussian, sigma up to ``blur_sigma``. Ink texture (``noise_p``): ink
    intensity multiplied by ``1 + N(0, noise_std)`` per pixel (the background stays 0, as
    preprocessing leaves it). ``margin``: border kept around the ink after re-cropping;
    ``max_height`` / ``max_width``: outputs larger than this are shrunk (keep them equal to
    the preprocessing limits).

    Stroke-level jitter of online ink (:func:`jitter_traces`), in units of the ink's symbol
    height: per-trace shift ``jitter_offset``, per-trace scale change ``jitter_scale`` and
    rotation ``jitter_rotate_deg``, smooth per-point wobble ``jitter_point``. In training, a
    sample with online ink (InkML) is drawn again from jittered strokes with probability
    ``jitter_p`` (:func:`reink`) before the image augmentations; this renders and preprocesses
    it in the loader workers (1.7–3.3 ms per sample), so it is off by default. When a sample
    is drawn again and its file gives symbol segmentation, each symbol is first replaced, with
    probability ``swap_p``, by another training writer's instance of the same symbol
    (:func:`swap_symbols`): the same formula and layout in a mixture of hands.
    """

    enabled: bool = True
    affine_p: float = 0.8
    scale_min: float = 0.85
    scale_max: float = 1.15
    rotate_deg: float = 3.0
    shear_deg: float = 10.0
    elastic_p: float = 0.3
    elastic_std: float = 1.5
    elastic_cell: int = 24
    thickness_p: float = 0.4
    thicken_max: int = 2
    thin_max: int = 1
    blur_p: float = 0.2
    blur_sigma: float = 0.8
    noise_p: float = 0.2
    noise_std: float = 0.15
    margin: int = 4
    max_height: int = 256
    max_width: int = 1024
    jitter_offset: float = 0.04
    jitter_scale: float = 0.06
    jitter_rotate_deg: float = 4.0
    jitter_point: float = 0.015
    jitter_p: float = 0.0
    swap_p: float = 0.0


class Augmenter:
    """``augmenter(image) -> image``: one random augmentation of a uint8 ink image.

    Randomness: ``set_random_seed(seed)`` makes the next outputs a pure function of the seed
    (albumentations' generator and this object's). Without it, each process draws a fresh seed
    on first use, so forked DataLoader workers never repeat each other's augmentations.
    """

    def __init__(self, cfg: AugmentConfig, seed: int | None = None):
        self.cfg = cfg
        self._affine = None
        if cfg.enabled and cfg.affine_p > 0:
            import albumentations as A

            self._affine = A.Compose(
                [
                    A.Affine(
                        scale=(cfg.scale_min, cfg.scale_max),
                        rotate=(-cfg.rotate_deg, cfg.rotate_deg),
                        shear={"x": (-cfg.shear_deg, cfg.shear_deg), "y": (0.0, 0.0)},
                        keep_ratio=True,
                        fit_output=True,
                        interpolation=cv2.INTER_LINEAR,
                        p=cfg.affine_p,
                    )
                ]
            )
        self._pid = -1
        if seed is not None:
            self.set_random_seed(seed)

    def set_random_seed(self, seed: int) -> None:
        """Seed every generator this augmenter draws from."""
        self._rng = np.random.default_rng(seed)
        if self._affine is not None and hasattr(self._affine, "set_random_seed"):
            # albumentations >= 2 keeps its own generators; 1.x draws from the global ones.
            self._affine.set_random_seed(int(self._rng.integers(2**31)))
        self._pid = os.getpid()

    def __call__(self, image: np.ndarray) -> np.ndarray:
        cfg = self.cfg
        if not cfg.enabled:
            return image
        if self._pid != os.getpid():
            self.set_random_seed(int(np.random.SeedSequence().generate_state(1)[0]))
        rng = self._rng
        out = image
        if self._affine is not None:
            out = self._affine(image=out)["image"]
        if rng.random() < cfg.elastic_p:
            out = _elastic(out, rng, cfg.elastic_std, cfg.elastic_cell)
        if rng.random() < cfg.thickness_p:
            out = _thickness(out, rng, cfg.thicken_max, cfg.thin_max)
        if rng.random() < cfg.blur_p:
            sigma = rng.uniform(0.3, max(cfg.blur_sigma, 0.3))
            out = cv2.GaussianBlur(out, (0, 0), sigma)
        if rng.random() < cfg.noise_p:
            gain = 1.0 + rng.normal(0.0, cfg.noise_std, out.shape)
            out = np.clip(out * gain, 0, 255).astype(np.uint8)
        return _recrop(out, image, cfg)


def _elastic(image: np.ndarray, rng: np.random.Generator, std: float, cell: int) -> np.ndarray:
    """Warp by a smooth random field: Gaussian offsets on a coarse grid, cubic-interpolated.

    Same effect as a blurred white-noise field (albumentations ``ElasticTransform``) at a tenth
    of the cost, since only the coarse grid is random.
    """
    height, width = image.shape
    grid = (height // cell + 2, width // cell + 2)
    dx, dy = (
        cv2.resize(
            rng.normal(0.0, std, grid).astype(np.float32),
            (width, height),
            interpolation=cv2.INTER_CUBIC,
        )
        for _ in range(2)
    )
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return cv2.remap(image, xs + dx, ys + dy, cv2.INTER_LINEAR, borderValue=0)


def _thickness(
    image: np.ndarray, rng: np.random.Generator, thicken_max: int, thin_max: int
) -> np.ndarray:
    """Thicker (dilation) or thinner (erosion) strokes by a whole number of pixels."""
    choices = [*range(1, thicken_max + 1), *range(-thin_max, 0)]
    if not choices:
        return image
    step = int(rng.choice(choices))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (abs(step) + 1, abs(step) + 1))
    if step > 0:
        return cv2.dilate(image, kernel)
    thinner = cv2.erode(image, kernel)
    # Erosion can erase thin strokes entirely: keep the original then.
    return thinner if thinner.max() >= 128 else image


def _recrop(image: np.ndarray, original: np.ndarray, cfg: AugmentConfig) -> np.ndarray:
    """Crop to the nonzero pixels plus ``cfg.margin``, within the size limits.

    Falls back to ``original`` if augmentation left no ink at all.
    """
    rows = np.flatnonzero(image.any(axis=1))
    if rows.size == 0:
        return original
    cols = np.flatnonzero(image.any(axis=0))
    ink = image[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    pad = 2 * cfg.margin
    height, width = ink.shape
    scale = min(1.0, (cfg.max_height - pad) / height, (cfg.max_width - pad) / width)
    if scale < 1.0:
        size = (max(1, int(width * scale)), max(1, int(height * scale)))
        ink = cv2.resize(ink, size, interpolation=cv2.INTER_AREA)
    return cv2.copyMakeBorder(ink, *(cfg.margin,) * 4, cv2.BORDER_CONSTANT, value=0)


def fit_within(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``image`` shrunk (aspect kept, area interpolation) until it fits ``height`` x ``width``;
    unchanged when it already fits. Keeps an augmented image on its static canvas."""
    h, w = image.shape[:2]
    scale = min(1.0, height / h, width / w)
    if scale >= 1.0:
        return image
    size = (min(width, max(1, int(w * scale))), min(height, max(1, int(h * scale))))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def build_augment(cfg: AugmentConfig, seed: int | None = None) -> Augmenter:
    """The image augmentation described by ``cfg`` (identity when ``cfg.enabled`` is false)."""
    return Augmenter(cfg, seed)


def jitter_traces(
    traces: Sequence[np.ndarray], rng: np.random.Generator, cfg: AugmentConfig
) -> list[np.ndarray]:
    """Stroke-level jitter of online ink: a differently written version of the same strokes.

    Each trace is shifted, scaled and rotated about its own centre by small random amounts, and
    its points wobble smoothly (random offsets at a few control points, linearly interpolated).
    Magnitudes are relative to :func:`hmer.data.inkml.ink_symbol_height`, so the result does not
    depend on the ink's units. Returns new ``(N, 2)`` float64 arrays; the input is not modified.
    """
    traces = [np.asarray(t, dtype=np.float64).reshape(-1, 2) for t in traces]
    traces = [t for t in traces if len(t)]
    if not cfg.enabled or not traces:
        return [t.copy() for t in traces]
    unit = ink_symbol_height(traces) or 1.0
    out = []
    for trace in traces:
        center = trace.mean(axis=0)
        angle = math.radians(rng.normal(0.0, cfg.jitter_rotate_deg))
        scale = 1.0 + rng.normal(0.0, cfg.jitter_scale)
        rotation = scale * np.array(
            [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]
        )
        shift = rng.normal(0.0, cfg.jitter_offset, 2) * unit
        moved = (trace - center) @ rotation.T + center + shift
        if len(trace) > 1 and cfg.jitter_point > 0:
            knots = max(2, len(trace) // 8)
            at = np.linspace(0, len(trace) - 1, knots)
            wobble = rng.normal(0.0, cfg.jitter_point * unit, (knots, 2))
            steps = np.arange(len(trace))
            moved += np.stack([np.interp(steps, at, wobble[:, k]) for k in range(2)], axis=1)
        out.append(moved)
    return out


class SymbolBank:
    """Every written instance of each symbol label in a set of expressions: the donors of
    :func:`swap_symbols`. Built from ``(traces, symbols)`` pairs (:class:`hmer.data.inkml.Ink`
    conventions); it keeps references to the trace arrays, not copies."""

    def __init__(self, expressions: Iterable[tuple[Sequence[np.ndarray], Sequence[Symbol]]]):
        self.instances: dict[str, list[tuple[np.ndarray, ...]]] = {}
        for traces, symbols in expressions:
            for label, indices in symbols:
                self.instances.setdefault(label, []).append(tuple(traces[i] for i in indices))

    def draw(self, label: str, rng: np.random.Generator) -> tuple[np.ndarray, ...] | None:
        """A random instance of ``label`` (its traces, in its file's units), None if unseen."""
        choices = self.instances.get(label)
        return choices[rng.integers(len(choices))] if choices else None


def swap_symbols(
    traces: Sequence[np.ndarray],
    symbols: Sequence[Symbol],
    bank: SymbolBank,
    rng: np.random.Generator,
    p: float,
) -> list[np.ndarray]:
    """The same expression with some symbols written by other hands.

    Each symbol is replaced with probability ``p`` by an instance of the same label drawn from
    ``bank``, stretched to the original's bounding box (stretchy symbols such as radicals,
    fraction bars and brackets must cover what they covered, whatever the donor file's units).
    An axis on which either box has no extent (a flat ``-``) takes the ratio of the boxes'
    diagonals instead. Traces outside any symbol stay. Returns new float64 ``(N, 2)`` arrays.
    """
    ink = [np.asarray(t, dtype=np.float64).reshape(-1, 2) for t in traces]
    replaced: set[int] = set()
    donated: list[np.ndarray] = []
    for label, indices in symbols:
        if rng.random() >= p:
            continue
        donor = bank.draw(label, rng)
        if donor is None:
            continue
        target = np.concatenate([ink[i] for i in indices])
        source = np.concatenate(donor).astype(np.float64)
        target_low, target_high = target.min(axis=0), target.max(axis=0)
        source_low, source_high = source.min(axis=0), source.max(axis=0)
        target_size, source_size = target_high - target_low, source_high - source_low
        source_diagonal = float(np.hypot(*source_size))
        if source_diagonal == 0.0:  # a one-point donor has no size to fit
            continue
        scale = np.full(2, float(np.hypot(*target_size)) / source_diagonal)
        fits = (source_size > 0) & (target_size > 0)
        scale[fits] = target_size[fits] / source_size[fits]
        shift = (target_low + target_high) / 2 - scale * (source_low + source_high) / 2
        donated += [np.asarray(t, dtype=np.float64) * scale + shift for t in donor]
        replaced.update(indices)
    return [t for i, t in enumerate(ink) if i not in replaced] + donated


def reink(
    traces: Sequence[np.ndarray],
    rng: np.random.Generator,
    cfg: AugmentConfig,
    render: RenderConfig,
    preprocess: PreprocessConfig,
    symbols: Sequence[Symbol] = (),
    bank: SymbolBank | None = None,
) -> np.ndarray:
    """A differently written version of online ink, as a training image: :func:`swap_symbols`
    (with ``bank``, ``symbols`` and ``cfg.swap_p`` > 0), :func:`jitter_traces`, then the
    rendering and preprocessing that made the stored image. uint8 ``(H, W)``, ink 255 on 0."""
    if bank is not None and symbols and cfg.swap_p > 0:
        traces = swap_symbols(traces, symbols, bank, rng, cfg.swap_p)
    return preprocess_image(render_traces(jitter_traces(traces, rng, cfg), render), preprocess)


def preview_grid(
    images: Sequence[np.ndarray],
    captions: Sequence[str],
    augment: Augmenter,
    variants: int = 3,
    cell: tuple[int, int] = (160, 480),
) -> np.ndarray:
    """A contact sheet: per image one row, the original then ``variants`` augmentations.

    Dark ink on white for reading (the data itself is ink 255 on 0); images larger than ``cell``
    ``(height, width)`` are shrunk to fit, smaller ones are shown at their size; each row is
    headed by its caption. Returns uint8 ``(H, W)``.
    """
    cell_h, cell_w = cell
    header = 20
    columns = 1 + variants
    sheet = np.full((len(images) * (header + cell_h + 4), columns * (cell_w + 4)), 255, np.uint8)
    for row, (image, caption) in enumerate(zip(images, captions, strict=True)):
        top = row * (header + cell_h + 4)
        cv2.putText(
            sheet, caption[:150], (4, top + 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, 0, 1, cv2.LINE_AA
        )
        shown = [image] + [augment(image) for _ in range(variants)]
        for column, picture in enumerate(shown):
            scale = min(1.0, cell_h / picture.shape[0], cell_w / picture.shape[1])
            if scale < 1.0:
                size = (
                    max(1, int(picture.shape[1] * scale)),
                    max(1, int(picture.shape[0] * scale)),
                )
                picture = cv2.resize(picture, size, interpolation=cv2.INTER_AREA)
            y, x = top + header, column * (cell_w + 4)
            sheet[y : y + picture.shape[0], x : x + picture.shape[1]] = 255 - picture
            cv2.rectangle(sheet, (x, y), (x + cell_w - 1, y + cell_h - 1), 200, 1)
    return sheet
