"""Seconds per formula for a person waiting: ``hmer predict``'s path end to end on CPU.

    python benchmarks/bench_predict.py [--checkpoint CKPT] [--n 40] [--beam 10] [--threads 2]
                                       [--decoder-threads 1]

Per image: read the PNG file, preprocess it (:func:`hmer.data.preprocess.preprocess`), encode
and run beam search (beam 10, both directions + rescoring), batch 1, for

- PyTorch: :class:`hmer.runtime.recognize.Recognizer` (eager, fp32), on ``--threads`` threads;
- onnxruntime: :class:`hmer.runtime.onnx.OnnxRecognizer` on the model's ONNX export, with its
  defaults: the encoder on ``--threads`` threads, the decoder step on one
  (``--decoder-threads``). This is what ``hmer predict`` runs on a CPU when onnxruntime is
  installed (``--engine auto``).

Images: real CROHME 2014 test expressions (InkML rendered at the 32 px symbol scale, saved as
dark-on-white PNG files) when the data is there, else synthetic expressions. Median and p90
seconds per formula are printed, wall-clock and process CPU time: on a machine shared with other
jobs, single-thread CPU time is the figure an idle machine would show. Target: median <= 0.2 s
on 2 cores.

Model: ``--checkpoint``, else the shipped model (``hmer/assets/model.pt``), else a random
BTTR-size model (DenseNet growth 24, 3 x 16 layers, d_model 256, 8 heads, 3 layers). A random
decoder never emits the end token, so every search would run to ``max_len`` (200): the worst
case, not what a person waits for. For that model each formula's search is therefore capped at
its truth length + 4 tokens (``--no-length-cap`` lifts it), the steps a trained model's beam
search takes on a formula it reads; the beam stays full until the cap, so the figure is still a
little pessimistic (a trained model's beam shrinks as hypotheses end).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from hmer.config import Config
from hmer.data.vocab import Vocab
from hmer.paths import default_model_path
from hmer.runtime.recognize import Recognizer

#: Steps a beam search runs past the length of the formula it reads (length-cap emulation).
EXTRA_STEPS = 4


def _crohme(n: int) -> tuple[list[np.ndarray], list[list[str]]] | None:
    """``n`` CROHME 2014 test expressions spread over the split: renders at the default 32 px
    symbol scale (ink 255 on 0) and canonical tokens."""
    from hmer.data.inkml import parse_inkml, render_traces
    from hmer.data.latex import normalize_latex
    from hmer.errors import DataError
    from hmer.paths import crohme_root

    root = crohme_root()
    if root is None:
        return None
    files = sorted((root / "inkml" / "2014").glob("*.inkml"))
    images, truths = [], []
    for path in files[:: max(1, len(files) // n)][:n]:
        ink = parse_inkml(path)
        try:
            truths.append(normalize_latex(ink.latex or "", str(path)))
        except DataError:
            continue
        images.append(render_traces(ink.traces))
    return images, truths


def _synthetic(n: int) -> tuple[list[np.ndarray], list[list[str]]]:
    from hmer.data.synth import generate_images

    items = list(generate_images(n, seed=1))
    return [image for _, image, _ in items], [tokens for _, _, tokens in items]


def _timed(predict: Callable[[int], object], count: int) -> tuple[list[float], list[float], list]:
    """Wall-clock and process CPU seconds of ``predict(i)`` for each formula, and the results
    (after one warm-up call)."""
    predict(0)  # warm-up: allocator, lazy imports, onnxruntime's first run
    wall, cpu, results = [], [], []
    for i in range(count):
        start, start_cpu = time.perf_counter(), time.process_time()
        results.append(predict(i))
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return wall, cpu, results


def _report(name: str, wall: list[float], cpu: list[float], found: list) -> None:
    lengths = [len(p.tokens) for p in found]
    print(
        f"{name:<12} wall: median {statistics.median(wall):.3f} s, "
        f"p90 {np.percentile(wall, 90):.3f} s | CPU: median {statistics.median(cpu):.3f} s, "
        f"p90 {np.percentile(cpu, 90):.3f} s | tokens per formula: mean {np.mean(lengths):.1f}"
    )


def _compare_layouts(
    recognizer: Recognizer, predict: Callable[[int], object], count: int, rounds: int = 3
) -> None:
    """Wall seconds of ``predict(i)`` with the model's weights channels-last and NCHW, the two
    timed one after the other on every formula (so drifts of the machine's speed hit both),
    ``rounds`` passes over the formulas."""
    model = recognizer.model
    layouts = {"channels-last": torch.channels_last, "nchw": torch.contiguous_format}
    wall: dict[str, list[float]] = {name: [] for name in layouts}
    tokens: dict[str, list] = {name: [] for name in layouts}
    for _ in range(rounds):
        for i in range(count):
            for name, layout in layouts.items():
                model.to(memory_format=layout)
                start = time.perf_counter()
                tokens[name].append(predict(i).tokens)
                wall[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(times) for name, times in wall.items()}
    for name, median in medians.items():
        print(f"pytorch {name:<14} wall: median {median:.3f} s")
    print(
        f"channels-last is {medians['nchw'] / medians['channels-last']:.2f}x NCHW's speed "
        f"({rounds} rounds); same tokens: {tokens['nchw'] == tokens['channels-last']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="default: the shipped model, else random")
    parser.add_argument("--n", type=int, default=40, help="test formulas")
    parser.add_argument("--beam", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch, ORT, cv2)")
    parser.add_argument(
        "--decoder-threads", type=int, default=1, help="onnxruntime decoder step threads"
    )
    parser.add_argument("--no-length-cap", action="store_true", help="random model: max_len 200")
    parser.add_argument("--no-onnx", action="store_true", help="PyTorch only")
    parser.add_argument(
        "--layouts",
        action="store_true",
        help="PyTorch only: channels-last weights (Recognizer's CPU default) against NCHW, "
        "the two timed in turn on each formula",
    )
    args = parser.parse_args()
    import cv2

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    load = os.getloadavg()[0]

    shipped = default_model_path()
    checkpoint = args.checkpoint or (shipped if shipped.is_file() else None)
    test = _crohme(args.n)
    origin = "CROHME 2014 test, rendered at 32 px symbols, saved as PNG"
    if test is None:
        test, origin = _synthetic(args.n), "synthetic expressions (CROHME not found)"
    images, truths = test
    if checkpoint is not None:
        recognizer = Recognizer.from_checkpoint(checkpoint, "cpu")
        model_note = f"checkpoint {checkpoint}"
    else:
        from hmer.engine.build import build_model

        torch.manual_seed(0)
        config, vocab = Config(), Vocab.crohme()
        recognizer = Recognizer(build_model(config, vocab), vocab, config, "cpu")
        model_note = "random BTTR-size weights"
    default_len = recognizer.config.decode.max_len
    cap = checkpoint is None and not args.no_length_cap
    max_lens = [len(t) + EXTRA_STEPS if cap else default_len for t in truths]
    n_params = sum(p.numel() for p in recognizer.model.parameters())
    print(
        f"predict benchmark: torch {torch.__version__}, {args.threads} threads "
        f"(onnxruntime decoder: {args.decoder_threads}), beam {args.beam}"
    )
    if load > 0.5:
        print(f"note: load average {load:.1f} at start: other processes share the cores")
    print(f"model: {model_note}, {n_params / 1e6:.2f} M parameters")
    print(f"data: {len(images)} formulas, {origin}")
    print(f"truth tokens per formula: mean {np.mean([len(t) for t in truths]):.1f}")
    if cap:
        print(f"searches capped at truth length + {EXTRA_STEPS} tokens (random decoder)")

    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(tmp) / f"{i:03d}.png" for i in range(len(images))]
        for path, ink in zip(paths, images, strict=True):
            cv2.imwrite(str(path), 255 - ink)

        def torch_predict(i: int) -> object:
            recognizer.config.decode.max_len = max_lens[i]
            return recognizer.predict(paths[i], beam=args.beam)

        if args.layouts:
            _compare_layouts(recognizer, torch_predict, len(paths))
            return
        wall, cpu, found = _timed(torch_predict, len(paths))
        _report("pytorch", wall, cpu, found)
        if args.no_onnx:
            return
        from hmer.runtime.export import export_onnx
        from hmer.runtime.onnx import OnnxRecognizer

        export_onnx(recognizer.model, recognizer.vocab, recognizer.config, Path(tmp) / "onnx")
        onnx = OnnxRecognizer(
            Path(tmp) / "onnx", threads=args.threads, decoder_threads=args.decoder_threads
        )

        def onnx_predict(i: int) -> object:
            onnx.decode.max_len = max_lens[i]
            return onnx.predict(paths[i], beam=args.beam)

        wall, cpu, onnx_found = _timed(onnx_predict, len(paths))
        _report("onnxruntime", wall, cpu, onnx_found)
        same = sum(a.tokens == b.tokens for a, b in zip(found, onnx_found, strict=True))
        print(f"onnxruntime tokens == pytorch tokens on {same}/{len(found)} formulas")


if __name__ == "__main__":
    main()
