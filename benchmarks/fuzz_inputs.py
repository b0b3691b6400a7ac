"""Hostile inputs for ``hmer predict``: do any crash it, hang it, or get an error not naming them?

    python benchmarks/fuzz_inputs.py [--n 10000] [--seed 0] [--workers 2] [--hang 30] [--cli 3]

Input ``i`` is made by the generator ``KINDS[kind]`` with a generator seeded by ``(seed, i)``, so
a run is reproducible input by input (``--only I`` makes and reads one, keeping it in ``--keep``):
corrupted png/jpg/tiff/webp/bmp bytes, zero-byte and 1x1 files, 1x50000 strips, 16-bit, palette,
CMYK, alpha, float and 32-bit pictures, headers claiming huge sizes, zip bombs around the pixel
budget, non-images with image names, odd file names, malformed InkML and special paths (folders
named like images, pipes, links to ``/dev/zero``, unreadable files).

Each input is read in a worker process the way ``hmer predict`` reads it: its argument expanded
by ``hmer.cli.predict.expand_inputs``, each path read by ``hmer.cli.predict.read_one`` with a
real :class:`hmer.runtime.reading.Reader` (the reading and preprocessing stage only: the model
adds nothing to reading, since every prepared image is a small uint8 array within the size
limits, and the model's own failures, ``--beam`` or NaN weights, do not depend on the input).
Outcome of an input:

- result: every path gave a model input (uint8 ``(H, W)`` within the size limits);
- clear error: an :class:`hmer.errors.HmerError` whose message names the file or argument;
- crash: any other exception, an error not naming the input, or a wrong-shaped result;
- hang: more than ``--hang`` seconds (the worker is killed and replaced).

Then ``--cli`` end-to-end calls of ``python -m hmer predict FOLDER`` (a random-weight tiny
model, beam 1, ``PYTHONIOENCODING=utf-8``) over folders of 40 inputs of every kind: a call that
prints a traceback, or where an image has neither its line on stdout nor an error on stderr,
counts as one crash (a timed-out call as one hang). The last line reads
``inputs: N, crashes: C, hangs: H, clear errors: E``; the one before, the largest resident
memory a reading worker reached.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import multiprocessing
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import zlib
from collections import Counter
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]

#: Suffixes of the pictures hmer reads, and the Pillow format that writes each.
FORMATS = {".png": "PNG", ".jpg": "JPEG", ".tiff": "TIFF", ".webp": "WEBP", ".bmp": "BMP"}
#: What the generators write: those, and GIF (which Pillow also reads, under any name).
WRITERS = {**FORMATS, ".gif": "GIF"}
SUFFIXES = [*FORMATS, ".jpeg", ".tif", ".inkml"]


# --- pictures -------------------------------------------------------------------------------------


def formula(rng: np.random.Generator, height: int | None = None, width: int | None = None):
    """A dark-on-paper picture of a few random strokes: uint8 ``(H, W)``."""
    height = height or int(rng.integers(24, 200))
    width = width or int(rng.integers(24, 500))
    picture = np.full((height, width), int(rng.integers(180, 256)), np.uint8)
    for _ in range(int(rng.integers(1, 8))):
        points = rng.integers(0, [width, height], (int(rng.integers(2, 6)), 2)).astype(np.int32)
        thickness = int(rng.integers(1, max(2, min(height, width) // 10 + 1)))
        cv2.polylines(picture, [points], False, int(rng.integers(0, 80)), thickness)
    return picture


def encode(image: Image.Image, suffix: str) -> bytes:
    """``image`` encoded in the format of ``suffix`` (:data:`WRITERS`)."""
    out = io.BytesIO()
    image.save(out, WRITERS[suffix])
    return out.getvalue()


def _random_format(rng: np.random.Generator) -> str:
    return str(rng.choice(list(FORMATS)))


def writable(image: Image.Image, suffix: str) -> Image.Image:
    """``image`` in a mode the format can write (JPEG: no alpha or palette; WebP: 8-bit)."""
    if suffix == ".jpg" and image.mode not in ("L", "RGB", "CMYK"):
        return image.convert("RGB")
    if suffix == ".webp" and image.mode not in ("RGB", "RGBA"):
        return image.convert("RGBA" if "A" in image.getbands() else "RGB")
    if suffix == ".bmp" and image.mode not in ("1", "L", "P", "RGB", "RGBA"):
        return image.convert("RGB")
    return image


def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One random corruption: bit flips, header bytes overwritten, truncation, inserted or
    repeated or zeroed bytes, or another format's signature."""
    data = bytearray(data)
    how = int(rng.integers(7))
    if how == 0:
        for position in rng.integers(0, len(data), int(rng.integers(1, 20))):
            data[position] ^= 1 << int(rng.integers(8))
    elif how == 1:
        for position in rng.integers(0, min(len(data), 64), int(rng.integers(1, 6))):
            data[position] = int(rng.integers(256))
    elif how == 2:
        data = data[: int(rng.integers(0, len(data)))]
    elif how == 3:
        at = int(rng.integers(0, len(data)))
        data[at:at] = rng.integers(0, 256, int(rng.integers(1, 64)), np.uint8).tobytes()
    elif how == 4:
        at, size = int(rng.integers(0, len(data))), int(rng.integers(1, 512))
        data[at:at] = data[at : at + size] * int(rng.integers(2, 20))
    elif how == 5:
        at, size = int(rng.integers(0, len(data))), int(rng.integers(1, 256))
        data[at : at + size] = bytes(len(data[at : at + size]))
    else:
        magic = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"BM", b"RIFF"]
        signature = magic[int(rng.integers(len(magic)))]
        data[: len(signature)] = signature
    return bytes(data)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_claiming(width: int, height: int, depth: int = 8, color: int = 6, rows: int = 0) -> bytes:
    """A PNG whose header says ``width`` x ``height`` (any size), followed by ``rows`` rows of
    zeros compressed as they are made: with ``rows``, a zip bomb that costs this process one row
    (``width`` x 4 bytes for RGBA: keep it small)."""
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color]
    packer = zlib.compressobj(9)
    if rows:  # a filter byte, then the row's samples
        row = b"\x00" + bytes(math.ceil(width * channels * depth / 8))
        body = b"".join(packer.compress(row) for _ in range(rows)) + packer.flush()
    else:
        body = packer.flush()
    header = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", body)
        + _png_chunk(b"IEND", b"")
    )


# --- the kinds of input ---------------------------------------------------------------------------
# Each makes one input under ``folder`` (an empty folder of its own) and returns the argument a
# user would give: a path, usually a file.


def corrupt(rng: np.random.Generator, folder: Path) -> Path:
    suffix = _random_format(rng)
    image = writable(Image.fromarray(formula(rng)), suffix)
    data = encode(image, suffix)
    for _ in range(int(rng.integers(1, 4))):
        data = _mutate(data, rng)
    path = folder / f"corrupt{suffix}"
    path.write_bytes(data)
    return path


def empty(rng: np.random.Generator, folder: Path) -> Path:
    path = folder / f"empty{rng.choice(SUFFIXES)}"
    path.write_bytes(b"")
    return path


def tiny(rng: np.random.Generator, folder: Path) -> Path:
    suffix = _random_format(rng)
    size = [(1, 1), (1, 2), (2, 1), (2, 2), (3, 3)][int(rng.integers(5))]
    mode = str(rng.choice(["L", "RGB", "RGBA", "1", "P"]))
    pixels = rng.integers(0, 256, (*size[::-1], 3), np.uint8)
    image = writable(Image.fromarray(pixels).convert(mode), suffix)
    path = folder / f"tiny{suffix}"
    path.write_bytes(encode(image, suffix))
    return path


def strip(rng: np.random.Generator, folder: Path) -> Path:
    """1 x N or N x 1 (N up to 50,000), ink or blank."""
    length = int(rng.choice([50000, int(rng.integers(2, 50000))]))
    line = np.full(length, 255, np.uint8)
    if rng.random() < 0.5:
        line[rng.integers(0, length, int(rng.integers(1, 100)))] = 0
    pixels = line[None] if rng.random() < 0.5 else line[:, None]
    suffix = str(rng.choice([".png", ".bmp", ".tiff", ".jpg", ".webp"]))
    path = folder / f"strip{suffix}"
    try:
        path.write_bytes(encode(Image.fromarray(pixels), suffix))
    except (OSError, ValueError):  # beyond what the format can hold (WebP: 16383 px)
        path.write_bytes(encode(Image.fromarray(pixels), ".png"))
    return path


def deep(rng: np.random.Generator, folder: Path) -> Path:
    """16-bit gray whose values reach 255, 1023, 4095 or 65535 (8- to 16-bit data)."""
    top = int(rng.choice([255, 1023, 4095, 65535]))
    pixels = (formula(rng).astype(np.float64) / 255 * top).astype(np.uint16)
    suffix = str(rng.choice([".png", ".tiff"]))
    path = folder / f"deep{suffix}"
    path.write_bytes(encode(Image.fromarray(pixels), suffix))
    return path


def palette(rng: np.random.Generator, folder: Path) -> Path:
    colors = int(rng.integers(2, 256))
    image = Image.fromarray(formula(rng)).convert("RGB").quantize(colors)
    if rng.random() < 0.5:
        image.info["transparency"] = int(rng.integers(0, colors))
    suffix = str(rng.choice([".png", ".bmp", ".tiff"]))
    path = folder / f"palette{suffix}"
    # A GIF under a picture's name, one time in five: Pillow reads it too.
    path.write_bytes(encode(image, ".gif" if rng.random() < 0.2 else suffix))
    return path


def cmyk(rng: np.random.Generator, folder: Path) -> Path:
    image = Image.fromarray(formula(rng)).convert("CMYK")
    suffix = str(rng.choice([".jpg", ".tiff"]))
    path = folder / f"cmyk{suffix}"
    path.write_bytes(encode(image, suffix))
    return path


def alpha(rng: np.random.Generator, folder: Path) -> Path:
    """Ink in the alpha channel (color anywhere), or an opaque picture with an alpha channel."""
    ink = 255 - formula(rng)
    color = rng.integers(0, 256, 3)
    rgba = np.zeros((*ink.shape, 4), np.uint8)
    rgba[:, :, :3] = color
    rgba[:, :, 3] = ink if rng.random() < 0.7 else 255
    image = Image.fromarray(rgba)
    if rng.random() < 0.3:
        image = image.convert("LA")
    suffix = str(rng.choice([".png", ".webp", ".tiff"]))
    path = folder / f"alpha{suffix}"
    path.write_bytes(encode(writable(image, suffix), suffix))
    return path


def floating(rng: np.random.Generator, folder: Path) -> Path:
    """Float TIFF in a random range, some pixels NaN or infinite."""
    low, high = sorted(rng.choice([-1.0, 0.0, 1.0, 255.0, 4095.0, 1e6, 1e30], 2, replace=False))
    pixels = low + formula(rng).astype(np.float32) / 255 * (high - low)
    for value in rng.choice([np.nan, np.inf, -np.inf], int(rng.integers(0, 4))):
        pixels[tuple(rng.integers(0, pixels.shape))] = value
    path = folder / "float.tiff"
    path.write_bytes(encode(Image.fromarray(pixels.astype(np.float32), "F"), ".tiff"))
    return path


def wide_integer(rng: np.random.Generator, folder: Path) -> Path:
    pixels = formula(rng).astype(np.int32) * int(rng.choice([1, 16, 257, 100000]))
    path = folder / "int32.tiff"
    path.write_bytes(encode(Image.fromarray(pixels, "I"), ".tiff"))
    return path


def huge_header(rng: np.random.Generator, folder: Path) -> Path:
    """A small file whose header claims a huge picture (up to the format's maximum)."""

    def side(limit: int) -> int:
        return int(rng.choice([limit, int(rng.integers(10000, limit + 1))]))

    which = int(rng.integers(4))
    if which == 0:
        data = png_claiming(side(2**31 - 1), side(2**31 - 1))
        suffix = ".png"
    elif which == 1:  # JPEG: the frame header's size
        data = bytearray(encode(Image.fromarray(formula(rng, 16, 16)), ".jpg"))
        frame = data.index(b"\xff\xc0")
        data[frame + 5 : frame + 9] = struct.pack(">HH", side(65500), side(65500))
        data, suffix = bytes(data), ".jpg"
    elif which == 2:  # BMP: width and height fields
        data = bytearray(encode(Image.fromarray(formula(rng, 8, 8)), ".bmp"))
        flip = int(rng.choice([1, -1]))  # negative: rows stored top-down
        data[18:26] = struct.pack("<ii", side(2**31 - 1), flip * side(2**31 - 1))
        data, suffix = bytes(data), ".bmp"
    else:  # TIFF: rewrite ImageWidth / ImageLength in the first IFD
        data = bytearray(encode(Image.fromarray(formula(rng, 8, 8)), ".tiff"))
        ifd = struct.unpack("<I", data[4:8])[0]
        for entry in range(struct.unpack("<H", data[ifd : ifd + 2])[0]):
            at = ifd + 2 + 12 * entry
            tag = struct.unpack("<H", data[at : at + 2])[0]
            if tag in (256, 257):
                data[at + 2 : at + 12] = struct.pack("<HII", 4, 1, side(2**31 - 1))
        data, suffix = bytes(data), ".tiff"
    path = folder / f"huge{suffix}"
    path.write_bytes(data)
    return path


def bomb(rng: np.random.Generator, folder: Path) -> Path:
    """A real PNG of zeros, small on disk, around the pixel budget when decoded."""
    from hmer.data.preprocess import MAX_DECODED_PIXELS

    color = int(rng.choice([0, 6]))
    width = 8192
    height = int(MAX_DECODED_PIXELS * float(rng.choice([0.5, 0.99, 1.01, 4.0]))) // width
    path = folder / "bomb.png"
    path.write_bytes(png_claiming(width, height, color=color, rows=height))
    return path


_NOT_IMAGES = [
    b"hello, world\n",
    b"<!DOCTYPE html><html><body>formula</body></html>",
    b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n",
    b"PK\x03\x04\x14\x00\x00\x00\x08\x00",
    b"\x7fELF\x02\x01\x01\x00" + bytes(56),
    b'{"strokes": [[[0, 0], [1, 1]]]}',
    b"\x00" * 4096,
    b"GIF89a\xff\xff\xff\xff\x00\x00\x00",
]


def not_image(rng: np.random.Generator, folder: Path) -> Path:
    if rng.random() < 0.5:
        data = _NOT_IMAGES[int(rng.integers(len(_NOT_IMAGES)))]
    else:
        data = rng.integers(0, 256, int(rng.integers(1, 5000)), np.uint8).tobytes()
    path = folder / f"not-an-image{rng.choice(SUFFIXES)}"
    path.write_bytes(data)
    return path


def mislabeled(rng: np.random.Generator, folder: Path) -> Path:
    """A picture named as another format, a picture named ``.inkml``, InkML named as a picture."""
    which = int(rng.integers(3))
    if which == 0:
        data = encode(Image.fromarray(formula(rng)), ".png")
        path = folder / f"picture{rng.choice(['.jpg', '.bmp', '.webp', '.tiff'])}"
    elif which == 1:
        data = encode(Image.fromarray(formula(rng)), _random_format(rng))
        path = folder / "picture.inkml"
    else:
        data = inkml_document(rng).encode()
        path = folder / f"ink{_random_format(rng)}"
    path.write_bytes(data)
    return path


# --- InkML ----------------------------------------------------------------------------------------

_NUMBERS = ["1e308", "-1e308", "5e-324", "-2.2e-308", "nan", "inf", "-inf", "1e999", "-0",
            "0x10", "1,5", "1_000", "١٢", "9" * 400, "1e9", "1000000001", "+.5", "."]  # fmt: skip


def inkml_document(rng: np.random.Generator, namespace: bool = True) -> str:
    """A well-formed InkML document of a few random strokes, 2 or 3 channels."""
    channels = int(rng.integers(2, 4))
    traces = []
    for _ in range(int(rng.integers(1, 8))):
        points = rng.normal(0, 300, (int(rng.integers(1, 30)), channels)).round(1)
        traces.append(", ".join(" ".join(f"{v:g}" for v in p) for p in points))
    body = "".join(f'<trace id="{i}">{t}</trace>' for i, t in enumerate(traces))
    xmlns = ' xmlns="http://www.w3.org/2003/InkML"' if namespace else ""
    return f'<ink{xmlns}><annotation type="truth">$x^2$</annotation>{body}</ink>'


def _inkml_mutation(text: str, rng: np.random.Generator) -> str | bytes:
    how = int(rng.integers(10))
    if how == 0:  # an extreme or malformed number
        numbers = text.split(" ")
        numbers[int(rng.integers(len(numbers)))] = str(rng.choice(_NUMBERS))
        return " ".join(numbers)
    if how == 1:  # a ragged trace: a value dropped or added
        at = text.find("</trace>")
        if at < 0:  # a document without traces gets a ragged one
            return text.replace("</ink>", "<trace>1 2, 3 4 5</trace></ink>")
        return text[:at] + (" 7" if rng.random() < 0.5 else ", 3") + text[at:]
    if how == 2:
        return text[: int(rng.integers(0, len(text)))]
    if how == 3:  # deep nesting
        depth = int(rng.integers(100, 200000))
        return text.replace("</ink>", "<a>" * depth + "</a>" * depth + "</ink>")
    if how == 4:  # many elements
        return text.replace("</ink>", "<traceGroup/>" * int(rng.integers(1000, 200000)) + "</ink>")
    if how == 5:  # entity expansion
        entities = '<!ENTITY a "1 2, 3 4, ">' + "".join(
            f'<!ENTITY {chr(98 + i)} "&{chr(97 + i)};&{chr(97 + i)};&{chr(97 + i)};">'
            for i in range(int(rng.integers(1, 12)))
        )
        return f"<!DOCTYPE ink [{entities}]>" + text.replace(">", ">&b;", 1)
    if how == 6:  # an external entity (never fetched)
        doctype = '<!DOCTYPE ink [<!ENTITY z SYSTEM "file:///dev/zero">]>'
        return doctype + text.replace("</ink>", "<annotation>&z;</annotation></ink>")
    if how == 7:  # other encodings, invalid bytes
        data = text.encode(str(rng.choice(["utf-16", "utf-8-sig", "latin-1"])))
        if rng.random() < 0.5:
            data = data.replace(b"x", b"\xff\xfe\x80", 1)
        return data
    if how == 8:  # channels: missing, swapped, duplicated
        names = list(rng.choice(["X", "Y", "T", "F", "X"], int(rng.integers(0, 4))))
        channels = "".join(f'<channel name="{n}"/>' for n in names)
        return text.replace(">", f"><traceFormat>{channels}</traceFormat>", 1)
    return _mutate(text.encode(), rng)


def inkml(rng: np.random.Generator, folder: Path) -> Path:
    document: str | bytes = inkml_document(rng, namespace=rng.random() < 0.7)
    for _ in range(int(rng.integers(1, 3))):
        if isinstance(document, str):
            document = _inkml_mutation(document, rng)
    path = folder / "ink.inkml"
    path.write_bytes(document if isinstance(document, bytes) else document.encode())
    return path


# --- names and special paths ----------------------------------------------------------------------

_NAMES = ["with space.png", "ünïcødé formula.png", "数式.jpg", "new\nline.png", "tab\there.bmp",
          "-dash.png", "UPPER.PNG", "double.png.webp", "x" * 240 + ".png", "quote'\"$`.png",
          "semi;colon|pipe.tiff", "percent%s%n.jpg", "emoji😀.webp"]  # fmt: skip


def odd_name(rng: np.random.Generator, folder: Path) -> Path:
    suffix = _random_format(rng)
    image = writable(Image.fromarray(formula(rng)), suffix)
    if rng.random() < 0.3:  # bytes that are not UTF-8: Python keeps them as surrogates
        name = os.fsdecode(b"bad\xff\xfename" + suffix.encode())
    else:
        name = str(rng.choice(_NAMES))
    path = folder / name
    written = Path(name).suffix.lower()
    path.write_bytes(encode(image, written if written in FORMATS else ".png"))
    return path


def special(rng: np.random.Generator, folder: Path) -> Path:
    """A path that is not a plain readable file, or a folder holding such entries."""
    which = int(rng.integers(9))
    path = folder / f"special{rng.choice(SUFFIXES)}"
    if which == 0:
        path.mkdir()
    elif which == 1:
        os.mkfifo(path)  # opening it waits for a writer forever
    elif which == 2:
        path.symlink_to("/dev/zero")  # never ends
    elif which == 3:
        path.symlink_to("/dev/null")
    elif which == 4:
        path.symlink_to(folder / "missing.png")
    elif which == 5:
        path.symlink_to(path)  # a loop
    elif which == 6:
        path.write_bytes(encode(Image.fromarray(formula(rng)), ".png"))
        path.chmod(0)  # unreadable (except for root)
    elif which == 7:  # a folder that cannot be listed, given itself or a file inside
        inner = folder / "locked"
        inner.mkdir()
        (inner / "inside.png").write_bytes(encode(Image.fromarray(formula(rng)), ".png"))
        inner.chmod(0)
        return inner if rng.random() < 0.5 else inner / "inside.png"
    else:  # a folder of such entries and one picture: expanded to what is a file
        path = folder / "mixed"
        path.mkdir()
        os.mkfifo(path / "fifo.png")
        (path / "folder.jpg").mkdir()
        (path / "zero.png").symlink_to("/dev/zero")
        (path / "broken.tiff").symlink_to(path / "missing.tiff")
        (path / "ok.png").write_bytes(encode(Image.fromarray(formula(rng)), ".png"))
    return path


#: Every kind of input, by name. ``bomb`` (seconds to read) is made once per 100 inputs only.
KINDS: dict[str, Callable[[np.random.Generator, Path], Path]] = {
    "corrupt": corrupt,
    "empty": empty,
    "tiny": tiny,
    "strip": strip,
    "deep": deep,
    "palette": palette,
    "cmyk": cmyk,
    "alpha": alpha,
    "float": floating,
    "int32": wide_integer,
    "huge header": huge_header,
    "not an image": not_image,
    "mislabeled": mislabeled,
    "inkml": inkml,
    "odd name": odd_name,
    "special": special,
    "bomb": bomb,
}
_ROTATION = [kind for kind in KINDS if kind != "bomb"]


def kind_of(index: int) -> str:
    """Which kind input ``index`` is: the kinds in turn, a bomb every 100th."""
    return "bomb" if index % 100 == 99 else _ROTATION[index % len(_ROTATION)]


def make_input(index: int, seed: int, folder: Path) -> tuple[str, Path]:
    """Input ``index`` of the run ``seed``, made under ``folder``: (its kind, its argument)."""
    kind = kind_of(index)
    return kind, KINDS[kind](np.random.default_rng([seed, index]), folder)


def unlock(folder: Path) -> None:
    """Give back the folder permissions the special kinds took away, so that ``folder`` can be
    removed (top-down: a folder is opened before it is walked into)."""
    for parent, folders, _ in os.walk(folder):
        for name in folders:
            with contextlib.suppress(OSError):
                (Path(parent) / name).chmod(0o700)


# --- reading --------------------------------------------------------------------------------------


def reader():
    """A :class:`hmer.runtime.reading.Reader` with the default settings: the real ``prepare``."""
    from hmer.data.inkml import RenderConfig
    from hmer.data.preprocess import PreprocessConfig
    from hmer.runtime.reading import Reader

    found = Reader()
    found.preprocess_config, found.render_config = PreprocessConfig(), RenderConfig()
    return found


def read_like_predict(argument: Path, reading) -> tuple[str, str]:
    """Read one argument as ``hmer predict`` does: ``(outcome, detail)``, outcome ``result``,
    ``error`` (every error names its input) or ``crash``."""
    from hmer.cli.predict import expand_inputs, read_one
    from hmer.errors import HmerError

    try:
        paths, errors = expand_inputs([str(argument)])
    except Exception:
        return "crash", traceback.format_exc()
    unnamed = [message for message in errors if str(argument) not in message]
    if unnamed:
        return "crash", f"an error not naming {argument!s}: {unnamed[0]}"
    outcome, detail = ("error", errors[0]) if errors else ("result", "")
    limits = reading.preprocess_config
    for path in paths:
        try:
            _, image = read_one(reading, path)
        except HmerError as error:
            if str(path) not in str(error):
                return "crash", f"an error not naming {path!s}: {error}"
            outcome, detail = "error", str(error)
            continue
        except Exception:
            return "crash", traceback.format_exc()
        good = (
            isinstance(image, np.ndarray)
            and image.dtype == np.uint8
            and image.ndim == 2
            and image.shape[0] <= limits.max_height
            and image.shape[1] <= limits.max_width
        )
        if not good:
            return "crash", f"{path}: a wrong model input {getattr(image, 'shape', image)!r}"
    return outcome, detail


def _worker(connection: Connection, seed: int, folder: str) -> None:
    """Make and read inputs sent by index, answering ``(index, kind, outcome, detail, maxrss)``."""
    reading = reader()
    while True:
        index = connection.recv()
        if index is None:
            return
        place = Path(folder) / str(index)
        place.mkdir()
        try:
            kind, argument = make_input(index, seed, place)
            outcome, detail = read_like_predict(argument, reading)
        except Exception:  # the generator itself: a bug of this script, said as such
            kind, outcome, detail = kind_of(index), "generator failed", traceback.format_exc()
        finally:
            unlock(place)
            shutil.rmtree(place, ignore_errors=True)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        connection.send((index, kind, outcome, detail, peak))


class Workers:
    """Processes reading inputs; one stuck longer than ``hang`` seconds is killed and replaced."""

    def __init__(self, count: int, seed: int, folder: Path, hang: float) -> None:
        self.context = multiprocessing.get_context("forkserver")
        self.seed, self.folder, self.hang = seed, str(folder), hang
        self.idle = [self._start() for _ in range(count)]
        self.busy: dict[Connection, tuple[multiprocessing.Process, int, float]] = {}

    def _start(self) -> tuple[multiprocessing.Process, Connection]:
        ours, theirs = self.context.Pipe()
        process = self.context.Process(
            target=_worker, args=(theirs, self.seed, self.folder), daemon=True
        )
        process.start()
        return process, ours

    def run(self, indices: list[int]):
        """Yield ``(index, kind, outcome, detail, maxrss)`` per index, in completion order."""
        pending = list(reversed(indices))
        while pending or self.busy:
            while pending and self.idle:
                process, connection = self.idle.pop()
                index = pending.pop()
                connection.send(index)
                self.busy[connection] = (process, index, time.monotonic())
            soonest = min(started for _, _, started in self.busy.values()) + self.hang
            for connection in wait(list(self.busy), timeout=max(0.0, soonest - time.monotonic())):
                process, index, _ = self.busy.pop(connection)
                try:
                    answer = connection.recv()
                except EOFError:  # the worker died: a crash of the interpreter itself
                    process.join()
                    self.idle.append(self._start())
                    yield index, kind_of(index), "crash", "the reading process died", 0.0
                    continue
                self.idle.append((process, connection))
                yield answer
            now = time.monotonic()
            for connection, (process, index, started) in list(self.busy.items()):
                if now - started > self.hang:
                    process.kill()
                    process.join()
                    del self.busy[connection]
                    self.idle.append(self._start())
                    yield index, kind_of(index), "hang", f"> {self.hang:g} s", 0.0

    def close(self) -> None:
        """Stop the idle workers, kill the busy ones (an interrupted run)."""
        for process, connection in self.idle:
            connection.send(None)
            process.join(timeout=10)
        for process, _, _ in self.busy.values():
            process.kill()
            process.join()


# --- end to end -----------------------------------------------------------------------------------


def random_checkpoint(path: Path) -> Path:
    """configs/tiny.yaml's model with random weights, decoding at most 12 tokens."""
    import torch

    from hmer.checkpoint import save_checkpoint
    from hmer.config import config_to_dict, load_config
    from hmer.data.vocab import Vocab
    from hmer.engine.build import build_model

    torch.manual_seed(0)
    config = load_config(ROOT / "configs" / "tiny.yaml", ["decode.max_len=12"])
    vocab = Vocab.crohme()
    model = build_model(config, vocab)
    return save_checkpoint(
        path, model=model.state_dict(), config=config_to_dict(config), vocab=vocab.to_dict()
    )


def cli_call(folder: Path, checkpoint: Path, timeout: float) -> tuple[str, str]:
    """``hmer predict FOLDER`` in a fresh process: ``(outcome, detail)``, outcome ``ok``,
    ``crash`` (a traceback, or an image with neither a result line nor an error) or ``hang``."""
    from hmer.cli.predict import expand_inputs

    expected, _ = expand_inputs([str(folder)])
    command = [sys.executable, "-m", "hmer", "predict", str(folder)]
    command += ["--checkpoint", str(checkpoint), "--engine", "torch", "--device", "cpu"]
    command += ["--beam", "1"]
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    try:
        done = subprocess.run(command, capture_output=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return "hang", f"> {timeout:g} s"
    out = os.fsdecode(done.stdout) if done.stdout else ""
    err = os.fsdecode(done.stderr) if done.stderr else ""
    if "Traceback" in err or done.returncode not in (0, 1):
        return "crash", err[-3000:]
    # A name with undecodable bytes prints them as \udcXX (backslashreplace).
    shown = [str(p).encode("utf-8", "backslashreplace").decode() for p in expected]
    missing = [name for name in shown if name not in out and name not in err]
    if missing:
        return "crash", f"no result and no error for {missing[:3]}"
    return "ok", f"{len(expected)} images, exit code {done.returncode}"


# --- the run --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000, help="inputs (default 10000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="reading processes (default 2)")
    parser.add_argument("--hang", type=float, default=30.0, help="seconds an input may take")
    parser.add_argument("--cli", type=int, default=3, help="end-to-end hmer predict calls")
    parser.add_argument("--only", type=int, metavar="I", help="make and read input I only")
    parser.add_argument("--keep", type=Path, help="with --only: make the input in this folder")
    args = parser.parse_args()
    if args.only is not None:
        folder = args.keep or Path(tempfile.mkdtemp(prefix="hmer-fuzz-"))
        folder.mkdir(parents=True, exist_ok=True)
        kind, argument = make_input(args.only, args.seed, folder)
        print(f"input {args.only} ({kind}): {argument!s}")
        print(*read_like_predict(argument, reader()), sep="\n")
        return
    crashes, hangs, errors = Counter(), Counter(), 0
    kinds: dict[str, Counter] = {}
    peak, began = 0.0, time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hmer-fuzz-") as tmp:
        workers = Workers(args.workers, args.seed, Path(tmp), args.hang)
        try:
            for index, kind, outcome, detail, rss in workers.run(list(range(args.n))):
                kinds.setdefault(kind, Counter())[outcome] += 1
                peak = max(peak, rss)
                errors += outcome == "error"
                if outcome in ("crash", "generator failed"):
                    crashes[kind] += 1
                    print(f"CRASH input {index} ({kind}):\n{detail}", file=sys.stderr)
                elif outcome == "hang":
                    hangs[kind] += 1
                    print(f"HANG input {index} ({kind}) {detail}", file=sys.stderr)
        finally:
            workers.close()
        read_seconds = time.perf_counter() - began
        calls = []
        if args.cli:
            checkpoint = random_checkpoint(Path(tmp) / "random.pt")
            for call in range(args.cli):
                folder = Path(tmp) / f"cli-{call}"
                folder.mkdir()
                for index in range(40):
                    place = folder / f"{index}"  # no suffix: not an input itself
                    place.mkdir()
                    _, argument = make_input(args.n + 40 * call + index, args.seed, place)
                    with contextlib.suppress(OSError):  # in a locked folder: stays there
                        argument.rename(folder / f"{index}-{argument.name}")
                calls.append(cli_call(folder, checkpoint, timeout=600))
                unlock(folder)
    print(f"{'kind':<14} {'inputs':>7} {'results':>8} {'errors':>7} {'crashes':>8} {'hangs':>6}")
    for kind, counts in sorted(kinds.items()):
        crashed = counts["crash"] + counts["generator failed"]
        print(
            f"{kind:<14} {sum(counts.values()):>7} {counts['result']:>8} {counts['error']:>7} "
            f"{crashed:>8} {counts['hang']:>6}"
        )
    print(f"read {args.n} inputs in {read_seconds:.0f} s ({args.workers} workers)")
    for call, (outcome, detail) in enumerate(calls):
        print(f"hmer predict call {call}: {outcome} ({detail.splitlines()[-1] if detail else ''})")
        if outcome == "crash":
            crashes["cli"] += 1
            print(detail, file=sys.stderr)
        hangs["cli"] += outcome == "hang"
    print(f"peak memory of a reading process: {peak:.0f} MB")
    print(
        f"inputs: {args.n}, crashes: {sum(crashes.values())}, hangs: {sum(hangs.values())}, "
        f"clear errors: {errors}"
    )


if __name__ == "__main__":
    main()
