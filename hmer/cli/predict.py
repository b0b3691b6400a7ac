"""hmer predict IMAGE|DIR|- ... (pictures of formulas -> LaTeX) and hmer export --onnx DIR.

``-`` reads one encoded image (png, jpg, ...) from standard input, e.g. a screenshot tool's
output. Output: one line per image, in argument order (a folder's images sorted by name). With one
image the line is its LaTeX, compact as one pastes it (x^{2}+y); with several it is
PATH<TAB>LATEX. With --tokens, the spaced tokens instead (x ^ { 2 } + y, as CROHME captions and
evaluation files write them). With --json, one JSON object per line (JSON Lines):
{"path": ..., "latex": ..., "tokens": [...], "score": ...}, the score being the
length-normalized log-probability (0 = certain). With --out FILE.tsv|.csv|.jsonl, every input's
result goes to that table instead (written once all are read; a progress bar on a terminal).
When the model has a card (``hmer.card``; the shipped model does), a reading whose score is low
for that model is said on stderr (with --out, in the table alone), and JSON records and tables
get ``low_score`` true|false. A file that cannot be read is reported on stderr, naming it (and
in the table's ``error`` column); the others are still read, and the exit code is then 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hmer import paths
from hmer.card import read_low_score
from hmer.cli import positive_int
from hmer.errors import HmerError
from hmer.runtime.device import default_device
from hmer.runtime.results import TABLE_FORMATS, Results, progress, progress_shown

if TYPE_CHECKING:
    import numpy as np

#: Files a folder argument expands to (the readers of hmer.data.inkml.load_image).
SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".inkml")
#: Images preprocessed and decoded together (bounded memory for long lists).
CHUNK = 32
#: The argument that names standard input.
STDIN = Path("-")


def _table_path(text: str) -> Path:
    """``--out``'s argument, refused before any work unless its suffix names a table format."""
    path = Path(text)
    if path.suffix.lower() not in TABLE_FORMATS:
        known = ", ".join(TABLE_FORMATS)
        if not path.suffix:
            raise argparse.ArgumentTypeError(f"{text}: no suffix to choose the format ({known})")
        raise argparse.ArgumentTypeError(
            f"{text}: unknown table format {path.suffix!r} (the suffix chooses: {known})"
        )
    return path


def _picture_path(text: str) -> Path:
    """``--show``/``--attention``'s argument, refused before any work when it names a folder or
    a suffix that matplotlib cannot write (no suffix: png)."""
    from matplotlib.backend_bases import FigureCanvasBase

    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: a folder; give a file, e.g. {path / 'out.png'}")
    known = FigureCanvasBase.get_supported_filetypes()
    if path.suffix and path.suffix[1:].lower() not in known:
        raise argparse.ArgumentTypeError(
            f"{text}: unknown picture format {path.suffix!r} ({', '.join(sorted(known))})"
        )
    return path


def expand_inputs(arguments: Sequence[str]) -> tuple[list[Path], list[str]]:
    """Paths to read, in order (folders -> their image files, sorted by name; ``-``: standard
    input, once), and the error messages of arguments that are neither a file nor a folder
    holding images, or that cannot be looked at (no permission, a name too long)."""
    paths, errors = [], []
    for argument in arguments:
        path = Path(argument)
        if argument == "-":
            if STDIN in paths:
                errors.append("-: standard input can be read once")
            else:
                paths.append(STDIN)
            continue
        try:
            if path.is_dir():
                found = _folder_inputs(path)
                if not found:
                    errors.append(f"{path}: no images in this folder ({', '.join(SUFFIXES)})")
                paths.extend(found)
            elif path.exists():
                paths.append(path)  # whatever it is: reading it says what is wrong
            else:
                errors.append(f"{path}: no such file or folder")
        except OSError as error:
            errors.append(f"{path}: cannot read ({error.strerror or error})")
    return paths, errors


def _folder_inputs(folder: Path) -> list[Path]:
    """The files of ``folder`` with a :data:`SUFFIXES` suffix, sorted by name. Entries that
    cannot be looked at are kept, so that reading them names them; OSError if the folder
    cannot be listed."""
    found = []
    for entry in folder.iterdir():
        if entry.suffix.lower() not in SUFFIXES:
            continue
        try:
            if entry.is_file():
                found.append(entry)
        except OSError:
            found.append(entry)
    return sorted(found)


def output_paths(out: Path, inputs: Sequence[Path]) -> list[Path]:
    """Where ``--show``/``--attention`` pictures go: ``out`` for one input, else
    ``<out stem>-<input stem><out suffix>`` beside ``out`` (numbered when stems repeat)."""
    if len(inputs) == 1:
        return [out]
    suffix = out.suffix or ".png"
    seen: dict[str, int] = {}
    paths = []
    for path in inputs:
        seen[path.stem] = seen.get(path.stem, 0) + 1
        tag = path.stem if seen[path.stem] == 1 else f"{path.stem}-{seen[path.stem]}"
        paths.append(out.with_name(f"{out.stem}-{tag}{suffix}"))
    return paths


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def choose_engine(args: argparse.Namespace) -> str:
    """``"onnx"`` or ``"torch"``: ``--engine`` when given; ``auto`` picks onnxruntime on CPU
    (same tokens, faster for one person waiting: benchmarks/RESULTS.md), else PyTorch;
    ``--attention`` needs PyTorch. Should onnx or onnxruntime be missing, ``auto`` says so once
    on stderr and takes PyTorch.

    Raises:
        HmerError: a combination that cannot work (naming the options), or ``--engine onnx`` /
            ``--onnx`` without the packages they need (naming the remedy).
    """
    attention = getattr(args, "attention", None)  # hmer serve has no --attention
    engine = "onnx" if args.onnx is not None and args.engine == "auto" else args.engine
    if engine == "auto":
        on_cpu = (args.device if args.device != "auto" else default_device()) == "cpu"
        engine = "onnx" if on_cpu and attention is None else "torch"
        if engine == "onnx":
            from hmer.runtime.onnx import INSTALL_HINT, missing_packages

            if missing := missing_packages():
                print(
                    f"hmer: note: {' and '.join(missing)} not installed, so this reads with "
                    f"PyTorch, seconds slower to start than onnxruntime: {INSTALL_HINT}",
                    file=sys.stderr,
                )
                engine = "torch"
    if engine == "onnx":
        if attention is not None:
            raise HmerError("--attention needs the PyTorch model: use --engine torch, not onnx")
        if args.device == "cuda":
            raise HmerError(
                "onnxruntime (--engine onnx, --onnx) runs on the CPU: "
                "--device cuda needs --engine torch"
            )
        from hmer.runtime.onnx import INSTALL_HINT, PACKAGES, missing_packages

        asked = f"--onnx {args.onnx}" if args.onnx is not None else "--engine onnx"
        # An export folder is only run; a checkpoint may be exported first.
        if missing := missing_packages(("onnxruntime",) if args.onnx is not None else PACKAGES):
            raise HmerError(f"{asked} needs {' and '.join(missing)}, not installed: {INSTALL_HINT}")
    elif args.onnx is not None:
        raise HmerError("--onnx DIR is read with onnxruntime: drop --engine torch")
    return engine


def load_recognizer(args: argparse.Namespace, engine: str) -> Any:
    """The recognizer that :func:`choose_engine`'s ``engine`` and the model options name."""
    if engine == "onnx":
        from hmer.runtime.onnx import OnnxRecognizer

        try:
            if args.onnx is not None:
                return OnnxRecognizer(args.onnx)
            checkpoint = args.checkpoint if args.checkpoint is not None else paths.shipped_model()
            return OnnxRecognizer.from_checkpoint(checkpoint, announce=_announce_export)
        except HmerError:  # the file or the options: PyTorch would fail alike
            raise
        except Exception as error:  # the exporter or onnxruntime itself
            if args.engine != "auto" or args.onnx is not None:  # asked for: not replaced
                asked = f"--onnx {args.onnx}" if args.onnx is not None else "--engine onnx"
                message = f"{asked}: {error} (--engine torch reads with PyTorch)"
                raise HmerError(message) from error
            # auto is never worse than PyTorch: a model that will not export is read with it.
            print(f"hmer: note: ONNX failed ({error}); reading with PyTorch", file=sys.stderr)
    from hmer.runtime.recognize import Recognizer

    device = None if args.device == "auto" else args.device
    if args.checkpoint is not None:
        return Recognizer.from_checkpoint(args.checkpoint, device)
    return Recognizer.from_pretrained(device)


def _print_any_file_name() -> None:
    """A file name that is not valid UTF-8 (kept by Python as lone surrogates) is printed with
    its undecodable bytes as ``\\udcXX``, as stderr prints it, instead of failing with
    UnicodeEncodeError when stdout's errors are strict (``PYTHONIOENCODING=utf-8``)."""
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None and sys.stdout.errors == "strict":
        reconfigure(errors="backslashreplace")


def _announce_export(folder: Path) -> None:
    """Tell a person at a terminal why the first use of a model takes seconds (silent when
    stderr is a file or a pipe, so scripts see no noise)."""
    if sys.stderr.isatty():
        print(
            f"hmer: exporting the model to ONNX for onnxruntime, once per model (a few "
            f"seconds): {folder}",
            file=sys.stderr,
            flush=True,
        )


def run_predict(args: argparse.Namespace) -> int:
    """Exit code 0 when every image was read, 1 when some could not be, 2 on a fatal error."""
    _print_any_file_name()
    engine = choose_engine(args)
    paths, errors = expand_inputs(args.inputs)
    for message in errors:
        print(f"hmer: error: {message}", file=sys.stderr)
    if not paths:
        return 1
    low = read_low_score(model_file(args))
    show = output_paths(args.show, paths) if args.show else [None] * len(paths)
    attention = output_paths(args.attention, paths) if args.attention else [None] * len(paths)
    failed = bool(errors)
    results = Results(args.out, paths, json_lines=args.json, tokens=args.tokens, low=low)
    # A bar that would move once (one chunk) says nothing.
    shown = progress_shown(len(paths), at_least=CHUNK + 1, table=args.out is not None)
    with results, progress(len(paths), shown) as advance:
        recognizer = load_recognizer(args, engine)
        check_beam(args.beam, recognizer.network.vocab_size)
        for chunk in _chunks(list(zip(paths, show, attention, strict=True)), CHUNK):
            ready = []
            for path, show_path, attention_path in chunk:
                try:
                    source, image = read_one(recognizer, path)
                    ready.append((path, source, image, show_path, attention_path))
                except HmerError as error:
                    print(f"hmer: error: {error}", file=sys.stderr)
                    results.failure(path, error)
                    failed = True
            predictions = recognizer.predict_images([item[2] for item in ready], beam=args.beam)
            for (path, source, image, show_path, attention_path), prediction in zip(
                ready, predictions, strict=True
            ):
                results.reading(path, prediction)
                _draw(recognizer, path, source, image, prediction, show_path, attention_path)
            advance(len(chunk))
    if args.out is not None:
        print(f"hmer: wrote {args.out}", file=sys.stderr)
    return 1 if failed else 0


def check_beam(beam: int, vocab_size: int) -> None:
    """A beam wider than the vocabulary cannot be filled: refused before any input is read."""
    if beam > vocab_size:
        raise HmerError(f"--beam {beam}: at most the vocabulary size, {vocab_size}")


def model_file(args: argparse.Namespace) -> Path | None:
    """The checkpoint that ``args`` read with (its card says what its scores mean): the
    ``--checkpoint``, else the shipped model; None for an ``--onnx`` folder."""
    if args.checkpoint is not None:
        return args.checkpoint
    return None if args.onnx is not None else paths.default_model_path()


def read_one(recognizer: Any, path: Path) -> tuple[Any, np.ndarray]:
    """One input of :func:`expand_inputs`' list -> what ``--show`` draws it from (the path, or
    the picture read from standard input) and the model's input image (``recognizer.prepare``).

    Raises:
        HmerError: the input cannot be read, or shows no ink (naming it).
    """
    from hmer.runtime.inputs import read_encoded

    source = read_encoded(sys.stdin.buffer, "<stdin>") if path == STDIN else path
    return source, recognizer.prepare(source)


def _draw(
    recognizer: Any,
    path: Path,
    source: Any,
    image: Any,
    prediction: Any,
    show_path: Path | None,
    attention_path: Path | None,
) -> None:
    """Write the ``--show`` and ``--attention`` pictures of one image (read from ``source``,
    ``path`` or the picture from standard input), saying where."""
    if show_path is not None:
        from hmer.runtime.inputs import read_input
        from hmer.viz import draw_prediction

        picture = read_input(source, recognizer.render_config)
        if path.suffix.lower() == ".inkml":  # rendered ink is 255 on 0: show it as on paper
            picture = 255 - picture
        written = draw_prediction(picture, prediction.latex, show_path, title=str(path))
        print(f"hmer: wrote {written}", file=sys.stderr)
    if attention_path is not None:
        from hmer.viz import draw_attention

        found = recognizer.attention(image, prediction)
        written = draw_attention(found.image, found.tokens, found.maps, attention_path)
        print(f"hmer: wrote {written}", file=sys.stderr)


def run_export(args: argparse.Namespace) -> int:
    from hmer.runtime.export import export_onnx
    from hmer.runtime.recognize import Recognizer

    if args.checkpoint is not None:
        recognizer = Recognizer.from_checkpoint(args.checkpoint, "cpu")
    else:
        recognizer = Recognizer.from_pretrained("cpu")
    paths = export_onnx(
        recognizer.model, recognizer.vocab, recognizer.config, args.onnx, opset=args.opset
    )
    for path in paths.values():
        print(f"wrote {path}")
    return 0


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """The options that choose the model and how it runs (``hmer predict``, ``hmer serve``):
    --checkpoint, --onnx, --engine, --device, --beam."""
    p.add_argument(
        "--checkpoint",
        type=Path,
        metavar="CKPT",
        help="a training checkpoint or exported weights (default: the shipped model)",
    )
    p.add_argument(
        "--onnx", type=Path, metavar="DIR", help="use an `hmer export --onnx` folder (onnxruntime)"
    )
    p.add_argument(
        "--engine",
        default="auto",
        choices=["auto", "onnx", "torch"],
        help="onnx: onnxruntime, the model exported once to $HMER_CACHE (default ~/.cache/hmer); "
        "torch: PyTorch. auto (default): onnx on CPU, else torch",
    )
    p.add_argument(
        "--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: CUDA if any"
    )
    p.add_argument("--beam", type=positive_int, default=10, help="beam width (default 10)")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict",
        help="read handwritten formulas in images (or InkML) and print LaTeX",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="IMAGE|DIR|-",
        help="png/jpg/bmp/tiff/webp pictures or CROHME .inkml files, or folders of them; "
        "-: one picture from standard input",
    )
    add_model_arguments(p)
    output = p.add_mutually_exclusive_group()
    output.add_argument(
        "--json", action="store_true", help="JSON Lines: path, latex, tokens, score"
    )
    output.add_argument(
        "--tokens",
        action="store_true",
        help="print the spaced tokens (x ^ { 2 } + y, as CROHME captions) instead of LaTeX",
    )
    output.add_argument(
        "--out",
        type=_table_path,
        metavar="FILE.tsv|.csv|.jsonl",
        help="write every input's result (path, latex, tokens, score, low_score, error) to a "
        "table instead of printing; the format is the suffix",
    )
    p.add_argument(
        "--show",
        type=_picture_path,
        metavar="OUT.png",
        help="draw the input above its rendered prediction (several inputs: OUT-<name>.png)",
    )
    p.add_argument(
        "--attention",
        type=_picture_path,
        metavar="OUT.png",
        help="draw where the decoder looked for each token (several inputs: OUT-<name>.png)",
    )
    p.set_defaults(func=run_predict)

    p = subparsers.add_parser(
        "export",
        help="export the model to ONNX (encoder + one cached decoder step)",
        description="Write encoder.onnx, decoder_step.onnx and model.json (vocabulary, config) "
        "to DIR; hmer.runtime.onnx.OnnxRecognizer decodes with them using onnxruntime + numpy.",
    )
    p.add_argument("--onnx", type=Path, required=True, metavar="DIR", help="output folder")
    p.add_argument(
        "--checkpoint",
        type=Path,
        metavar="CKPT",
        help="a training checkpoint or exported weights (default: the shipped model)",
    )
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.set_defaults(func=run_export)
