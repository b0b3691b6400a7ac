"""Datasets: (image, canonical tokens, name) samples from the layouts people actually have.

``load_samples`` detects the layout of ``source``:

- an **InkML folder** (CROHME ``inkml/``: ``<split>/`` with files, recursively, e.g.
  ``train/<source>/*.inkml``); the truth is normalized with ``normalize_latex``;
- the **BTTR/CoMER layout**, a folder or a ``.zip`` (possibly with one top-level folder, as in
  ``data.zip: data/2014/caption.txt``): ``<split>/caption.txt`` with ``name<TAB>tokens`` lines
  (tokens taken as they are: papers score against them) and images ``<name>.bmp|png|jpg`` in
  ``<split>/`` or ``<split>/img/``;
- an **image folder + table**: a ``.tsv``/``.csv`` of ``name, latex`` rows (CSV quoting, quoted
  newlines, optional header: :func:`hmer.data.captions.table_rows`), names relative to the
  table's folder with or without an extension, also found by suffix anywhere below it (CROHME
  ``png/``: ``groundtruth_train.tsv`` names ``KAIST/x`` for ``train/KAIST/x.png``).

Every image goes through :func:`hmer.data.preprocess.preprocess` (InkML is rendered first), so a
sample's image is what the model sees at inference. Bad items never pass silently: lenient mode
(default) skips them and counts them by reason in a :class:`SkipReport`; strict mode raises a
DataError naming the file (and line).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import io
import multiprocessing
import multiprocessing.context
import os
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from hmer.data.captions import LabelRow, caption_rows, read_text, table_rows
from hmer.data.inkml import RenderConfig, Symbol, parse_inkml, render_traces
from hmer.data.latex import normalize_latex
from hmer.data.preprocess import IMAGE_SUFFIXES, PreprocessConfig, decode_image
from hmer.data.preprocess import preprocess as preprocess_image
from hmer.errors import DataError, LatexError
from hmer.io import atomic_write_bytes
from hmer.paths import CROHME_ENV, crohme_root

if TYPE_CHECKING:
    from hmer.data.vocab import Vocab

#: The CROHME splits under ``crohme_root()/inkml``.
CROHME_SPLITS = ("train", "2014", "2016", "2019")
TABLE_SUFFIXES = (".tsv", ".csv")
_RENDER, _PREPROCESS = RenderConfig(), PreprocessConfig()


@dataclass
class Sample:
    """One expression. ``image``: uint8 ``(H, W)``, ink 255 on 0, already preprocessed;
    ``tokens``: canonical LaTeX tokens; ``name``: unique within its dataset (e.g.
    ``KAIST/TrainData1_6_sub_3`` for an InkML file below its split folder, without suffix);
    ``traces``: the online ink, ``(N, 2)`` float32 points per stroke, for InkML sources loaded
    with ``keep_traces`` (stroke-level augmentation draws it again), else None; ``published``:
    the caption's tokens as published (BTTR/CoMER layouts: what papers score against), before
    :func:`normalize_latex` made ``tokens`` of them; None for other sources; ``symbols``: the
    ink's symbol segmentation (:attr:`hmer.data.inkml.Ink.symbols`), kept with ``traces``."""

    name: str
    image: np.ndarray
    tokens: list[str]
    traces: tuple[np.ndarray, ...] | None = None
    published: list[str] | None = None
    symbols: tuple[Symbol, ...] | None = None


@dataclass
class SkipReport:
    """What lenient loading left out, and why.

    ``counts``: reason -> number skipped; ``examples``: reason -> the first few messages (each
    names the file, and the line for tables); ``unknown_tokens``: token -> occurrences among
    samples skipped for tokens outside the vocabulary.
    """

    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    unknown_tokens: Counter[str] = field(default_factory=Counter)
    max_examples: int = 5

    @property
    def count(self) -> int:
        """Total number of skipped items."""
        return sum(self.counts.values())

    def add(self, reason: str, message: str) -> None:
        self.counts[reason] += 1
        examples = self.examples.setdefault(reason, [])
        if len(examples) < self.max_examples:
            examples.append(message)

    def __str__(self) -> str:
        if not self.counts:
            return "nothing skipped"
        lines = [f"skipped {self.count}:"]
        for reason, n in self.counts.most_common():
            lines.append(f"  {reason}: {n}")
            lines.extend(f"    {message}" for message in self.examples.get(reason, []))
        if self.unknown_tokens:
            tokens = " ".join(f"{t} ({n})" for t, n in self.unknown_tokens.most_common(20))
            lines.append(f"  unknown tokens: {tokens}")
        return "\n".join(lines)


@dataclass(frozen=True)
class _Item:
    """One thing to load, as listed (cheap, picklable; the work happens in ``_load``).

    ``path``: the InkML/image file, or the zip holding ``member``; ``label``: the caption's
    tokens (``kind == "caption"``), raw LaTeX (``"table"``), or None (``"inkml"``: in the file);
    ``table``/``line``: where the label came from, for messages.
    """

    kind: str
    name: str
    path: str
    member: str | None = None
    label: str | None = None
    table: str | None = None
    line: int | None = None


@dataclass(frozen=True)
class _Skip:
    """Why an item was left out: a reason key and a DataError's parts."""

    reason: str
    message: str
    source: str | None
    line: int | None
    unknown: tuple[str, ...] = ()


def _skip(reason: str, error: DataError, unknown: tuple[str, ...] = ()) -> _Skip:
    message = str(error)
    if error.source is not None:
        where = error.source + (f":{error.line}" if error.line is not None else "") + ": "
        message = message.removeprefix(where)
    return _Skip(reason, message, error.source, error.line, unknown)


# --- listing -------------------------------------------------------------------------------------


class _ImageIndex:
    """Finds ``name`` among image files: exact relative path, then unique path suffix."""

    def __init__(self, relative_paths: Iterable[str], split: str | None):
        self.exact: dict[str, str] = {}
        self.by_stem: dict[str, list[str]] = {}
        self.split = split
        for path in relative_paths:
            pure = PurePosixPath(path)
            if pure.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            key = str(pure.with_suffix(""))
            self.exact.setdefault(key, path)
            self.by_stem.setdefault(pure.stem, []).append(path)

    def find(self, name: str) -> tuple[str | None, str]:
        """(relative path or None, why not found)."""
        pure = PurePosixPath(name.replace("\\", "/"))
        if pure.suffix.lower() in IMAGE_SUFFIXES:
            pure = pure.with_suffix("")
        key = str(pure)
        if key in self.exact:
            return self.exact[key], ""
        candidates = [
            p
            for p in self.by_stem.get(pure.name, [])
            if str(PurePosixPath(p).with_suffix("")).endswith("/" + key)
        ]
        if len(candidates) > 1 and self.split:
            in_split = [p for p in candidates if self.split in PurePosixPath(p).parts]
            candidates = in_split or candidates
        if len(candidates) == 1:
            return candidates[0], ""
        if not candidates:
            return None, "missing_image"
        return None, "ambiguous_image"


def _list_inkml(folder: Path) -> list[_Item]:
    files = sorted(folder.rglob("*.inkml"))
    return [
        _Item("inkml", file.relative_to(folder).with_suffix("").as_posix(), str(file))
        for file in files
    ]


def _list_labelled(
    rows: Iterable[LabelRow],
    kind: str,
    table: str,
    index: _ImageIndex,
    base: str,
    zip_path: str | None,
    report: SkipReport,
    strict: bool,
) -> list[_Item]:
    """Items for the rows whose images ``index`` finds under ``base``.

    A row with a problem, or without a name or a label field, is malformed (``bad_row``); two
    rows naming one image conflict. Names lose a trailing image suffix.
    """
    items = []
    seen: set[str] = set()
    for row in rows:
        line, name, label = row.line, row.name, row.label
        found = None
        if row.problem is not None:
            problem, message = "bad_row", row.problem
        elif not name or label is None:
            problem, message = "bad_row", "expected a name and a label"
        else:
            found, problem = index.find(name)
            message = f"{'no' if problem == 'missing_image' else 'several'} image(s) for {name!r}"
            if found in seen:
                problem, message = "duplicate_name", f"a second row for image {found!r}"
        if problem:
            error = DataError(message, table, line)
            if strict:
                raise error
            report.add(problem, str(error))
            continue
        seen.add(found)
        pure = PurePosixPath(name)
        if pure.suffix.lower() in IMAGE_SUFFIXES:
            name = str(pure.with_suffix(""))
        location = f"{base}/{found}" if base else found
        if zip_path is None:
            items.append(_Item(kind, name, location, None, label, table, line))
        else:
            items.append(_Item(kind, name, zip_path, location, label, table, line))
    return items


def _bttr_split_dir(names: list[str], split: str | None, source: str) -> str:
    """The folder (relative posix, "" for the top) holding ``split``'s caption.txt in ``names``."""
    captions = [PurePosixPath(n) for n in names if PurePosixPath(n).name == "caption.txt"]
    matching = [c for c in captions if split is None or c.parent.name == split]
    if len(matching) == 1:
        parent = matching[0].parent
        return "" if str(parent) == "." else parent.as_posix()
    available = ", ".join(sorted(c.parent.name or "." for c in captions)) or "none"
    raise DataError(
        f"{'no' if not matching else 'several'} caption.txt for split {split!r}"
        f" (folders with one: {available})",
        source,
    )


def _bttr_items(
    names: list[str],
    read: Callable[[str], bytes],
    split: str | None,
    source: str,
    zip_path: str | None,
    report: SkipReport,
    strict: bool,
) -> list[_Item]:
    """Items of a BTTR layout from its file names (posix, relative to ``source`` or inside the
    zip) and a reader of their bytes. Images are looked up in the split folder, then ``img/``."""
    split_dir = _bttr_split_dir(names, split, source)
    prefix = f"{split_dir}/" if split_dir else ""
    caption = f"{prefix}caption.txt"
    caption_source = f"{source}:{caption}" if zip_path else str(Path(source, caption))
    text = read_text(read(caption), caption_source)
    local = [n[len(prefix) :] for n in names if n.startswith(prefix)]
    index = _ImageIndex([n for n in local if PurePosixPath(n).parent.name in ("", "img")], split)
    rows = caption_rows(text)
    base = split_dir if zip_path else str(Path(source, split_dir))
    return _list_labelled(rows, "caption", caption_source, index, base, zip_path, report, strict)


def _list(source: Path, split: str | None, report: SkipReport, strict: bool) -> list[_Item]:
    """Detect the layout of ``source`` and list its items for ``split``."""
    if not source.exists():
        raise DataError("no such file or folder", source)
    if source.is_file():
        suffix = source.suffix.lower()
        if suffix == ".zip":
            return _list_zip(source, split, report, strict)
        if suffix in TABLE_SUFFIXES:
            return _list_table(source, split, report, strict)
        if source.name == "caption.txt":
            return _list_bttr_folder(source.parent.parent, source.parent.name, report, strict)
        raise DataError(
            "not a dataset: expected a folder, a .zip, a .tsv/.csv or caption.txt", source
        )
    if split is not None and (source / split / "caption.txt").is_file():
        return _list_bttr_folder(source, split, report, strict)
    if split is not None and (source / split).is_dir() and any((source / split).rglob("*.inkml")):
        return _list_inkml(source / split)
    nested = sorted(source.glob(f"*/{split}/caption.txt")) if split is not None else []
    if len(nested) == 1:
        return _list_bttr_folder(nested[0].parent.parent, split, report, strict)
    tables = _tables_for(source, split)
    if len(tables) == 1:
        return _list_table(tables[0], split, report, strict)
    if split is None:
        if (source / "caption.txt").is_file():
            return _list_bttr_folder(source.parent, source.name, report, strict)
        if any(source.rglob("*.inkml")):
            return _list_inkml(source)
    found = [t.name for t in tables] + [p.parent.name for p in source.glob("*/caption.txt")]
    raise DataError(
        f"cannot find split {split!r} here (InkML folder, <split>/caption.txt, or a table;"
        f" found: {', '.join(sorted(found)) or 'nothing'})",
        source,
    )


def _tables_for(folder: Path, split: str | None) -> list[Path]:
    tables = sorted(p for p in folder.iterdir() if p.suffix.lower() in TABLE_SUFFIXES)
    if split is None:
        return tables
    exact = [t for t in tables if t.stem == split or t.stem.endswith(f"_{split}")]
    return exact or [t for t in tables if split in t.stem]


def _list_bttr_folder(root: Path, split: str, report: SkipReport, strict: bool) -> list[_Item]:
    names = [
        p.relative_to(root).as_posix()
        for sub in (root / split, root / split / "img")
        if sub.is_dir()
        for p in sub.iterdir()
        if p.is_file()
    ]

    def read(name: str) -> bytes:
        return (root / name).read_bytes()

    return _bttr_items(names, read, split, str(root), None, report, strict)


def _list_zip(path: Path, split: str | None, report: SkipReport, strict: bool) -> list[_Item]:
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if not n.endswith("/")]
            return _bttr_items(names, archive.read, split, str(path), str(path), report, strict)
    except (zipfile.BadZipFile, OSError) as error:
        raise DataError(f"unreadable zip ({error})", path) from None


def _list_table(table: Path, split: str | None, report: SkipReport, strict: bool) -> list[_Item]:
    root = table.parent
    text = read_text(table.read_bytes(), str(table))
    rows = table_rows(text, "\t" if table.suffix.lower() == ".tsv" else ",")
    files = [
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    ]
    index = _ImageIndex(files, split)
    return _list_labelled(rows, "table", str(table), index, str(root), None, report, strict)


# --- loading one item ----------------------------------------------------------------------------

_ZIPS: dict[tuple[int, str], zipfile.ZipFile] = {}


def _read_member(zip_path: str, member: str) -> bytes:
    """A zip member's bytes; each process opens its own handle (forked handles share offsets)."""
    key = (os.getpid(), zip_path)
    if key not in _ZIPS:
        _ZIPS[key] = zipfile.ZipFile(zip_path)
    return _ZIPS[key].read(member)


@functools.cache
def _code_digest() -> bytes:
    """Digest of the code that makes cached images (the source files of the renderer and of the
    preprocessor): editing it invalidates the cache."""
    digest = hashlib.sha1(b"hmer-cache-1")
    for function in (render_traces, preprocess_image):
        digest.update(Path(inspect.getfile(function)).read_bytes())
    return digest.digest()


def _cache_key(data: bytes, *settings: object) -> str:
    digest = hashlib.sha1(_code_digest())
    digest.update(data)
    for setting in settings:
        digest.update(repr(setting).encode())
    return digest.hexdigest()


def _cache_load(cache_dir: str, key: str) -> tuple[np.ndarray, str] | None:
    path = Path(cache_dir, key[:2], f"{key}.npz")
    try:
        with np.load(path) as stored:
            return stored["image"], str(stored["label"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None


def _cache_store(cache_dir: str, key: str, image: np.ndarray, label: str) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, image=image, label=np.array(label))
    atomic_write_bytes(Path(cache_dir, key[:2], f"{key}.npz"), buffer.getvalue())


@dataclass(frozen=True)
class _Settings:
    render: RenderConfig
    preprocess: PreprocessConfig
    vocab: frozenset[str] | None
    cache_dir: str | None
    keep_traces: bool = False


def _tokens(item: _Item, label: str | None, source: str) -> list[str]:
    if item.kind == "caption":
        tokens = (label or "").split()
        if not tokens:
            raise DataError("empty label", item.table, item.line)
        try:  # the published convention, made canonical (its unbraced arguments braced)
            return normalize_latex(" ".join(tokens))
        except LatexError:  # a malformed caption is kept as published: it still counts
            return tokens
    if label is None:
        raise DataError("no truth annotation", source)
    where = f"{item.table}:{item.line}" if item.kind == "table" else source
    return normalize_latex(label, source=where)


def _load(item: _Item, settings: _Settings) -> Sample | _Skip:
    """Read, tokenize and render/preprocess one item; a _Skip instead of any DataError."""
    source = f"{item.path}:{item.member}" if item.member else item.path
    try:
        data = _read_member(item.path, item.member) if item.member else Path(item.path).read_bytes()
    except (OSError, KeyError, zipfile.BadZipFile) as error:
        return _skip("unreadable", DataError(f"cannot read ({error})", source))
    inkml = item.kind == "inkml"
    key = cached = ink = None
    if settings.cache_dir is not None:
        key = _cache_key(data, settings.render if inkml else None, settings.preprocess)
        cached = _cache_load(settings.cache_dir, key)
    label = item.label
    if inkml and cached is not None and not settings.keep_traces:
        label = cached[1] or None
    elif inkml:
        try:
            ink = parse_inkml(data, source=source)
        except DataError as error:
            return _skip("bad_inkml", error)
        label = ink.latex
    try:
        tokens = _tokens(item, label, source)
    except DataError as error:
        return _skip("no_truth" if label is None else "bad_label", error)
    if settings.vocab is not None:
        unknown = {t for t in tokens if t not in settings.vocab}
        if unknown:
            where = (item.table, item.line) if item.table else (source, None)
            message = f"tokens outside the vocabulary: {' '.join(sorted(unknown))}"
            return _skip(
                "unknown_token",
                DataError(message, *where),
                tuple(t for t in tokens if t in unknown),
            )
    traces = symbols = None
    if ink is not None and settings.keep_traces:
        traces = tuple(np.asarray(t, np.float32) for t in ink.traces)
        symbols = ink.symbols
    published = (label or "").split() if item.kind == "caption" else None
    if cached is not None:
        return Sample(item.name, cached[0], tokens, traces, published, symbols)
    try:
        raw = render_traces(ink.traces, settings.render) if ink else decode_image(data, source)
        image = preprocess_image(raw, settings.preprocess)
    except DataError as error:
        return _skip(
            "bad_inkml" if inkml else "bad_image",
            DataError(str(error), source) if error.source is None else error,
        )
    if key is not None:
        _cache_store(settings.cache_dir, key, image, label or "")
    return Sample(item.name, image, tokens, traces, published, symbols)


def _init_worker() -> None:
    # One process per core already: cv2's own threads would only oversubscribe.
    cv2.setNumThreads(1)


def _pool_context() -> multiprocessing.context.BaseContext:
    """Fresh worker processes: a child forked from a process whose OpenCV thread pool has run
    can deadlock in OpenCV (reproduced here), so never fork this process itself."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def load_samples(
    source: str | Path,
    split: str | None = None,
    *,
    render: RenderConfig = _RENDER,
    preprocess: PreprocessConfig = _PREPROCESS,
    strict: bool = False,
    workers: int = 0,
    limit: int | None = None,
    cache_dir: str | Path | None = None,
    vocab: Vocab | None = None,
    subset_seed: int | None = None,
    keep_traces: bool = False,
) -> tuple[list[Sample], SkipReport]:
    """Load a dataset split into RAM (layouts: see the module docstring).

    ``workers``: processes rendering/preprocessing (0: in this process). They are fresh
    processes (forkserver, or spawn): a script calling this needs the usual
    ``if __name__ == "__main__":`` guard.
    ``limit``: only the first ``limit`` listed items (a random ``limit`` of them, in listing
    order, if ``subset_seed`` is given).
    ``cache_dir``: reuse preprocessed images, keyed by file content, settings and the code of
    rendering and preprocessing.
    ``vocab``: report (lenient) or reject (strict) samples with tokens outside it.
    ``keep_traces``: InkML samples also keep their online ink (``Sample.traces``).

    Returns samples in listing order (sorted paths, or table/caption order) and the report of
    what was skipped.

    Raises:
        DataError: the source cannot be read or its layout recognized; in strict mode, the first
            bad item (naming its file, and line for tables and captions).
    """
    report = SkipReport()
    items = _list(Path(source), split, report, strict)
    if limit is not None and subset_seed is not None and limit < len(items):
        chosen = np.random.default_rng(subset_seed).choice(len(items), limit, replace=False)
        items = [items[i] for i in sorted(chosen)]
    elif limit is not None:
        items = items[:limit]
    settings = _Settings(
        render,
        preprocess,
        None if vocab is None else frozenset(vocab.tokens),
        None if cache_dir is None else str(cache_dir),
        keep_traces,
    )
    samples = []
    for result in _map(items, settings, workers):
        if isinstance(result, Sample):
            samples.append(result)
            continue
        if strict:
            raise DataError(result.message, result.source, result.line)
        report.add(result.reason, str(DataError(result.message, result.source, result.line)))
        report.unknown_tokens.update(result.unknown)
    return samples, report


def _map(items: list[_Item], settings: _Settings, workers: int) -> Iterator[Sample | _Skip]:
    if workers <= 0 or len(items) < 2:
        for item in items:
            yield _load(item, settings)
        return
    chunk = max(1, min(64, len(items) // (workers * 8)))
    with _pool_context().Pool(workers, initializer=_init_worker) as pool:
        yield from pool.imap(_load_one, ((item, settings) for item in items), chunksize=chunk)


def _load_one(task: tuple[_Item, _Settings]) -> Sample | _Skip:
    return _load(*task)


def dataset_stats(samples: Sequence[Sample], vocab: Vocab) -> dict[str, Any]:
    """Counts and distributions of loaded samples, as plain Python values.

    Keys: ``count``; ``tokens`` (occurrences); ``coverage`` (share of token occurrences in
    ``vocab``); ``unknown`` (token -> occurrences, most frequent first); ``vocab_used`` (distinct
    vocabulary symbols that occur); ``label_length``, ``height``, ``width``, ``area``:
    ``{"min", "p5", "p25", "p50", "p75", "p95", "max", "mean"}``.
    """
    counts = Counter(t for s in samples for t in s.tokens)
    total = sum(counts.values())
    known = set(vocab.tokens)
    unknown = {t: n for t, n in counts.most_common() if t not in known}

    def spread(values: list[float]) -> dict[str, float]:
        if not values:
            return {}
        q = np.percentile(values, [0, 5, 25, 50, 75, 95, 100])
        names = ("min", "p5", "p25", "p50", "p75", "p95", "max")
        return {
            **{k: float(v) for k, v in zip(names, q, strict=True)},
            "mean": float(np.mean(values)),
        }

    shapes = [s.image.shape for s in samples]
    return {
        "count": len(samples),
        "tokens": total,
        "coverage": 1.0 - sum(unknown.values()) / total if total else 1.0,
        "unknown": unknown,
        "vocab_used": len(set(counts) & known),
        "label_length": spread([len(s.tokens) for s in samples]),
        "height": spread([h for h, _ in shapes]),
        "width": spread([w for _, w in shapes]),
        "area": spread([h * w for h, w in shapes]),
    }


def write_bttr_layout(
    items: Iterable[tuple[str, np.ndarray, list[str]]], out_dir: str | Path, split: str
) -> Path:
    """Write ``<out_dir>/<split>/<name>.png`` and ``caption.txt`` (``name<TAB>tokens``).

    ``items``: ``(name, uint8 image, tokens)``, consumed lazily; names must be plain file names.
    Every file is written atomically, the caption last, so a crash leaves no caption that names
    missing images. Returns the caption path.

    Raises:
        DataError: a name that is empty, not a plain file name, or repeated; an image that cannot
            be encoded; empty tokens; an unwritable folder.
    """
    folder = Path(out_dir) / split
    lines = []
    seen: set[str] = set()
    for name, image, tokens in items:
        if (
            not name
            or name != Path(name).name
            or name in {".", ".."}
            or any(c in name for c in "\t\n\r\\")
        ):
            raise DataError(f"sample name {name!r} is not a plain file name", folder)
        if name in seen:
            raise DataError(f"sample name {name!r} appears twice", folder)
        if not tokens or any(not t or t.split() != [t] for t in tokens):
            raise DataError(f"sample {name!r}: tokens must be non-empty words", folder)
        seen.add(name)
        ok, png = cv2.imencode(".png", np.ascontiguousarray(image))
        if not ok:
            raise DataError(f"sample {name!r}: cannot encode image {image.shape}", folder)
        atomic_write_bytes(folder / f"{name}.png", png.tobytes())
        lines.append(f"{name}\t{' '.join(tokens)}\n")
    caption = folder / "caption.txt"
    atomic_write_bytes(caption, "".join(lines).encode())
    return caption


def crohme_split(name: str) -> tuple[Path, str]:
    """``(source, split)`` for ``load_samples`` of a CROHME split (train, 2014, 2016, 2019).

    Raises:
        DataError: unknown split name, or no CROHME folder (``$HMER_CROHME`` / ../shared/crohme).
    """
    if name not in CROHME_SPLITS:
        raise DataError(
            f"unknown CROHME split {name!r} (expected one of {', '.join(CROHME_SPLITS)})"
        )
    root = crohme_root()
    if root is None:
        raise DataError(f"CROHME data not found: set {CROHME_ENV} or place it at ../shared/crohme")
    return root / "inkml", name
