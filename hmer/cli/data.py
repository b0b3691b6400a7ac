"""``hmer data …``: render CROHME InkML to the BTTR layout, describe a dataset, preview it.

hmer data render INKML_DIR OUT_DIR      # OUT_DIR/<split>/<name>.png + caption.txt
hmer data stats PATH [--split S]        # counts, vocabulary coverage, size distributions
hmer data preview PATH --out grid.png   # originals and augmented samples
hmer data synth --n N --out DIR         # synthetic handwriting (hmer/data/synth)
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from hmer.cli import non_negative_int
from hmer.data.vocab import Vocab
from hmer.errors import DataError
from hmer.io import atomic_write_bytes


def _default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _render(args: argparse.Namespace) -> int:
    from hmer.data.datasets import load_samples, write_bttr_layout
    from hmer.data.inkml import RenderConfig

    source = Path(args.inkml_dir)
    render = RenderConfig(symbol_height=args.symbol_height, stroke_width=args.stroke_width)
    samples, report = load_samples(
        source, None, render=render, strict=args.strict, workers=args.workers
    )
    split = args.split or source.resolve().name
    stems = [Path(s.name).name for s in samples]
    # BTTR names are file stems; fall back to the flattened relative path where stems collide.
    unique = len(set(stems)) == len(stems)
    items = (
        (stem if unique else sample.name.replace("/", "_"), sample.image, sample.tokens)
        for stem, sample in zip(stems, samples, strict=True)
    )
    caption = write_bttr_layout(items, args.out_dir, split)
    print(f"wrote {len(samples)} images and {caption}")
    print(report)
    return 0


def _stats(args: argparse.Namespace) -> int:
    from hmer.data.datasets import dataset_stats, load_samples

    samples, report = load_samples(args.path, args.split, workers=args.workers, limit=args.limit)
    stats = dataset_stats(samples, Vocab.crohme())
    print(f"{args.path} (split {args.split}): {stats['count']} samples, {stats['tokens']} tokens")
    print(
        f"vocabulary: {stats['coverage']:.2%} of token occurrences in Vocab.crohme(); "
        f"{stats['vocab_used']} of its symbols occur"
    )
    if stats["unknown"]:
        listed = " ".join(f"{t} ({n})" for t, n in list(stats["unknown"].items())[:30])
        print(f"unknown tokens: {listed}")
    for key in ("label_length", "height", "width", "area"):
        row = stats[key]
        if row:
            figures = "  ".join(f"{k} {v:.0f}" for k, v in row.items())
            print(f"{key:>12}: {figures}")
    print(report)
    return 0


def _preview(args: argparse.Namespace) -> int:
    import cv2

    from hmer.data.augment import AugmentConfig, build_augment, preview_grid
    from hmer.data.datasets import load_samples

    samples, report = load_samples(
        args.path, args.split, workers=args.workers, limit=args.n, subset_seed=args.seed
    )
    if not samples:
        raise DataError(f"nothing to preview ({report})", args.path)
    augment = build_augment(AugmentConfig(), seed=args.seed)
    captions = [f"{s.name}: {' '.join(s.tokens)}" for s in samples]
    sheet = preview_grid([s.image for s in samples], captions, augment, variants=args.variants)
    ok, png = cv2.imencode(".png", sheet)
    if not ok:
        raise DataError("cannot encode the preview as PNG", args.out)
    atomic_write_bytes(args.out, png.tobytes())
    print(f"wrote {args.out}: {len(samples)} samples x (original + {args.variants} augmented)")
    if report.count:
        print(report)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="prepare, inspect and preview datasets")
    data_subparsers = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    render = data_subparsers.add_parser(
        "render",
        help="render an InkML folder to the BTTR layout (images + caption.txt)",
        description="Render every InkML file below INKML_DIR (e.g. crohme/inkml/train), "
        "normalize its LaTeX truth, and write OUT_DIR/SPLIT/<name>.png plus "
        "OUT_DIR/SPLIT/caption.txt (name<TAB>tokens). Files without truth are reported.",
    )
    render.add_argument("inkml_dir", help="folder of .inkml files (searched recursively)")
    render.add_argument("out_dir", help="output folder")
    render.add_argument("--split", help="split folder name (default: INKML_DIR's name)")
    render.add_argument("--symbol-height", type=float, default=32.0, help="px per symbol (32)")
    render.add_argument("--stroke-width", type=float, default=2.0, help="pen width in px (2)")
    render.add_argument(
        "--workers", type=non_negative_int, default=_default_workers(), help="processes"
    )
    render.add_argument("--strict", action="store_true", help="stop at the first bad file")
    render.set_defaults(func=_render)

    stats = data_subparsers.add_parser(
        "stats",
        help="counts, vocabulary coverage, label-length and image-size distributions",
        description="Load a dataset (InkML folder, BTTR folder or zip, image folder + table) "
        "and describe it against the built-in CROHME vocabulary.",
    )
    stats.add_argument("path", help="dataset folder, .zip, or .tsv/.csv table")
    stats.add_argument("--split", help="split inside PATH (e.g. train, 2014)")
    stats.add_argument("--limit", type=int, help="only the first N samples")
    stats.add_argument(
        "--workers", type=non_negative_int, default=_default_workers(), help="processes"
    )
    stats.set_defaults(func=_stats)

    preview = data_subparsers.add_parser(
        "preview",
        help="PNG grid of random samples: originals and augmented versions",
        description="Pick N random samples of a dataset (any layout load_samples reads) and "
        "write a contact sheet: per row the preprocessed original, then augmented versions.",
    )
    preview.add_argument("path", help="dataset folder, .zip, or .tsv/.csv table")
    preview.add_argument("--out", required=True, help="PNG file to write")
    preview.add_argument("--split", help="split inside PATH")
    preview.add_argument("--n", type=int, default=16, help="samples (16)")
    preview.add_argument("--variants", type=int, default=3, help="augmented versions each (3)")
    preview.add_argument("--seed", type=int, default=0, help="which samples and augmentations")
    preview.add_argument("--workers", type=non_negative_int, default=0, help="processes (0)")
    preview.set_defaults(func=_preview)

    _register_synth(data_subparsers)


def _register_synth(data_subparsers: argparse._SubParsersAction) -> None:
    synth = data_subparsers.add_parser(
        "synth",
        help="write synthetic handwritten expressions as a BTTR layout (images + caption.txt)",
        description="Sample expressions from a grammar (and recombine real formulas with "
        "--corpus), write them as handwriting, render them like CROHME ink, and write "
        "OUT/SPLIT/<name>.png + OUT/SPLIT/caption.txt. Same seed, same dataset, for any --workers.",
    )
    synth.add_argument("--n", type=int, required=True, help="number of expressions")
    synth.add_argument("--out", type=Path, required=True, help="output folder")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synth.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)"
    )
    synth.add_argument("--split", default="train", help="subfolder name (default train)")
    synth.add_argument("--grammar", type=Path, help="YAML overriding grammar.yaml fields")
    synth.add_argument(
        "--corpus",
        type=Path,
        help="formulas to recombine: a caption file, a BTTR folder or an InkML folder",
    )
    synth.set_defaults(func=_synth)


def _synth(args: argparse.Namespace) -> int:
    # Start-up: the synthetic handwriting and OpenCV load only when this command runs.
    from hmer.data.synth.cli import run_synth

    return run_synth(args)
