"""A contact sheet of expression images, for looking at a dataset (``hmer data preview``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from hmer.errors import DataError


def preview_grid(
    images: Sequence[np.ndarray],
    captions: Sequence[str] | None = None,
    columns: int = 4,
    cell: tuple[int, int] = (112, 360),
) -> np.ndarray:
    """Tile images (uint8 (H, W), ink 255 on 0) into one sheet: dark ink on white, for people.

    Each image is shrunk (never enlarged) to fit a ``cell`` (height, width); a caption, when
    given, is written under it in small grey print.
    """
    height, width = cell
    caption_h = 16 if captions is not None else 0
    rows = max(1, -(-len(images) // columns))
    sheet = np.full((rows * (height + caption_h), columns * width), 255, dtype=np.uint8)
    for k, image in enumerate(images):
        r, c = divmod(k, columns)
        y, x = r * (height + caption_h), c * width
        scale = min(1.0, (height - 8) / image.shape[0], (width - 8) / image.shape[1])
        size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
        tile = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        sheet[y + 4 : y + 4 + tile.shape[0], x + 4 : x + 4 + tile.shape[1]] = 255 - tile
        if captions is not None:
            text = (
                captions[k]
                if len(captions[k]) <= width // 6
                else captions[k][: width // 6 - 3] + "..."
            )
            cv2.putText(sheet, text, (x + 4, y + height + 11), cv2.FONT_HERSHEY_PLAIN, 0.75, 110, 1)
        cv2.rectangle(sheet, (x, y), (x + width - 1, y + height + caption_h - 1), 200, 1)
    return sheet


def read_layout(
    folder: str | Path, split: str, limit: int | None = None
) -> list[tuple[str, np.ndarray, str]]:
    """``(name, image, caption)`` from a BTTR layout ``<folder>/<split>/caption.txt`` + PNGs."""
    root = Path(folder) / split
    caption_file = root / "caption.txt"
    if not caption_file.is_file():
        raise DataError("no caption.txt here (expected a BTTR layout)", caption_file)
    out = []
    for line in caption_file.read_text(encoding="utf-8").splitlines():
        if limit is not None and len(out) >= limit:
            break
        name, _, caption = line.partition("\t")
        image = cv2.imread(str(root / f"{name}.png"), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise DataError(f"missing or unreadable image for {name!r}", root / f"{name}.png")
        out.append((name, image, caption))
    return out
