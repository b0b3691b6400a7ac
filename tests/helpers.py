"""Plain helpers shared by the test modules (the fixtures built on them are in ``conftest.py``).

``tiny_dataset`` writes a BTTR-layout folder (``train/`` and ``test/`` with ``caption.txt``) of
expressions made of a few stroke symbols rendered with the real renderer, so the engine tests
need no CROHME data. ``fit_checkpoint`` fits configs/tiny.yaml's model for a few seconds to three
synthetic expressions (``hmer.data.synth``) so that it reads them back with short, stable
hypotheses, and saves it with the engine's checkpoint format.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from hmer.config import Config, config_to_dict, load_config
from hmer.data.inkml import RenderConfig, parse_inkml, render_traces
from hmer.data.preprocess import PreprocessConfig, preprocess

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny.yaml"
#: What the fitted model reads back (canonical tokens the synthetic hand can write).
LABELS = [["x", "+", "1"], ["2", "y"], ["a", "=", "b"]]
#: Real CROHME 2014 test expressions used for the picture variants and the ONNX parity.
CROHME_NAMES = ["18_em_0", "18_em_1", "18_em_10", "18_em_11", "18_em_12", "18_em_13"]


#: Stroke drawings in a unit box (x right, y down) of symbols in the CROHME vocabulary.
_GLYPHS: dict[str, list[list[tuple[float, float]]]] = {
    "1": [[(0.3, 0.0), (0.3, 1.0)]],
    "7": [[(0.0, 0.0), (0.6, 0.0), (0.2, 1.0)]],
    "-": [[(0.0, 0.5), (0.6, 0.5)]],
    "+": [[(0.0, 0.5), (0.6, 0.5)], [(0.3, 0.2), (0.3, 0.8)]],
    "=": [[(0.0, 0.35), (0.6, 0.35)], [(0.0, 0.65), (0.6, 0.65)]],
    "x": [[(0.0, 0.3), (0.5, 1.0)], [(0.0, 1.0), (0.5, 0.3)]],
}


def expression_traces(tokens: list[str], rng: np.random.Generator) -> list[np.ndarray]:
    """Ink for ``tokens`` written left to right, each stroke densified and slightly jittered."""
    traces = []
    for position, token in enumerate(tokens):
        for stroke in _GLYPHS[token]:
            points = np.array(stroke, dtype=np.float64) * 40.0 + [position * 36.0, 0.0]
            dense = np.concatenate(
                [np.linspace(a, b, 8, endpoint=False) for a, b in itertools.pairwise(points)]
                + [points[-1:]]
            )
            traces.append(dense + rng.normal(0, 0.8, dense.shape))
    return traces


def tiny_dataset(root: Path, n_train: int = 16, n_test: int = 4, seed: int = 0) -> Path:
    """A BTTR-layout folder under ``root``: ``train`` and ``test`` splits of random expressions."""
    from hmer.data.datasets import write_bttr_layout
    from hmer.data.inkml import RenderConfig, render_traces

    rng = np.random.default_rng(seed)
    render = RenderConfig(symbol_height=16.0, stroke_width=1.5, margin=2)
    symbols = sorted(_GLYPHS)
    for split, count in (("train", n_train), ("test", n_test)):
        items = []
        for i in range(count):
            tokens = [symbols[j] for j in rng.integers(0, len(symbols), rng.integers(1, 4))]
            image = render_traces(expression_traces(tokens, rng), render)
            items.append((f"{split}_{i:03d}", image, tokens))
        write_bttr_layout(items, root, split)
    return root


def tiny_overrides(data: Path) -> list[str]:
    """Overrides of configs/tiny.yaml for ``data`` (see :func:`tiny_dataset`): CPU, quiet,
    in-process loading, a quarter of train held out for validation, very short decodes."""
    return [
        f"data.train={data}",
        "data.train_split=train",
        f"data.test={data}",
        "data.test_splits=[test]",
        "data.load_workers=0",
        "data.val_fraction=0.25",
        "train.device=cpu",
        "train.progress=false",
        "train.batch_pixels=12000",
        "train.warmup_steps=2",
        "decode.max_len=8",
    ]


def tiny_config(data: Path, *overrides: str) -> Config:
    return load_config(TINY, [*tiny_overrides(data), *overrides])


def read_records(run_dir: Path, kind: str | None = None) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    return [r for r in records if kind is None or r["kind"] == kind]


#: Dropout, augmentation and EMA on; 3 steps per epoch, so step 4 stops mid-epoch.
RESUME_OVERRIDES = (
    "train.max_steps=8",
    "train.log_every=2",
    "train.val_every=0",
    "train.ckpt_every=0",
    "train.final_test=false",
    "train.ema=true",
    "model.dropout=0.2",
    "data.augment=true",
)


def assert_same_tensors(a: dict, b: dict, where: str = "") -> None:
    assert a.keys() == b.keys(), where
    for key in a:
        if isinstance(a[key], dict):
            assert_same_tensors(a[key], b[key], f"{where}.{key}")
        elif isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), f"{where}.{key} differs"


def strokes(count: int, size: float = 10.0) -> list[np.ndarray]:
    t = np.linspace(0, 2 * math.pi, 20)
    return [
        np.stack([i * 12 + size * 0.35 * (1 + np.cos(t)), size * 0.5 * (1 + np.sin(t))], 1)
        if i % 2 == 0
        else np.array([[i * 12 + 2, 2], [i * 12 + 4, 0], [i * 12 + 4, size]])
        for i in range(count)
    ]


def write_inkml(
    path: Path, count: int, latex: str | None, symbols: Sequence[str] | None = None
) -> None:
    """``count`` strokes as InkML; ``symbols``: a label per stroke, written as CROHME's symbol
    segmentation (one trace group per stroke)."""
    truth = "" if latex is None else f'<annotation type="truth">{latex}</annotation>'
    traces = "".join(
        f'<trace id="{i}">{", ".join(f"{x:.2f} {y:.2f}" for x, y in t)}</trace>'
        for i, t in enumerate(strokes(count))
    )
    groups = "".join(
        f'<traceGroup><annotation type="truth">{label}</annotation>'
        f'<traceView traceDataRef="{i}"/></traceGroup>'
        for i, label in enumerate(symbols or ())
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'<ink xmlns="http://www.w3.org/2003/InkML">{truth}{traces}{groups}</ink>')


def tiny_predict_config() -> Config:
    """configs/tiny.yaml without dropout, decoding at most 12 tokens (fast on any input)."""
    return load_config(TINY, ["model.dropout=0.0", "decode.max_len=12", "decode.beam=10"])


def synthetic_renders() -> list[np.ndarray]:
    """The :data:`LABELS` written by the synthetic generator's hands, rendered (uint8, ink 255
    on 0) at 32 px per symbol, twice the tiny model's scale, as a scan would be."""
    pytest.importorskip("HersheyFonts", reason="synthetic handwriting needs hershey-fonts")
    from hmer.data.synth import draw, render_drawing

    rng = np.random.default_rng(0)
    return [render_drawing(draw(tokens, rng), RenderConfig()) for tokens in LABELS]


def paper(ink: np.ndarray) -> np.ndarray:
    """A render as a scan: dark ink on white paper."""
    return 255 - ink


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Torch on one thread: fastest for tiny models, and unharmed by other jobs on the cores
    (several threads spin-waiting for busy cores make small operations many times slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def fit_checkpoint(path: Path, min_steps: int = 80, max_steps: int = 300) -> Path:
    """Fit the tiny model to the synthetic expressions (each step: the images plus an augmented
    copy, by the training augmentation) for ``min_steps`` and then until greedy reads them back,
    and save it in the engine's format. Once per test session: later calls find the file."""
    if path.is_file():
        return path
    with one_thread():
        return _fit(path, min_steps, max_steps)


def _fit(path: Path, min_steps: int, max_steps: int) -> Path:
    from hmer.checkpoint import save_checkpoint
    from hmer.data.augment import build_augment
    from hmer.data.batching import collate
    from hmer.data.preprocess import to_tensor
    from hmer.data.vocab import Vocab
    from hmer.engine.build import build_model
    from hmer.search.torch_backend import greedy

    cfg = tiny_predict_config()
    vocab = Vocab.crohme()
    images = [preprocess(ink, cfg.preprocess) for ink in synthetic_renders()]
    ids = [vocab.encode(tokens) for tokens in LABELS]
    augment = build_augment(cfg.augment, seed=0)
    clean = collate([(to_tensor(im), i, "") for im, i in zip(images, ids, strict=True)], 0)
    torch.manual_seed(0)
    model = build_model(cfg, vocab)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(1, max_steps + 1):
        model.train()
        pairs = [(augment(im), i) for im, i in zip(images, ids, strict=True)]
        pairs += list(zip(images, ids, strict=True))
        batch = collate([(to_tensor(im), i, "") for im, i in pairs], vocab.pad_id)
        loss = model(batch.images, batch.image_mask, batch.tokens, batch.lengths)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step >= min_steps and step % 10 == 0 and loss.item() < 0.05:
            model.eval()
            read = greedy(model, clean.images, clean.image_mask, max_len=12)
            if [h.tokens for h in read] == ids:
                break
    save_checkpoint(
        path,
        model=model.state_dict(),
        config=config_to_dict(cfg),
        vocab=vocab.to_dict(),
        meta={"fitted_to": [" ".join(t) for t in LABELS], "steps": step},
    )
    return path


def crohme_renders(root: Path, names: list[str] = CROHME_NAMES) -> list[np.ndarray]:
    """Real CROHME test expressions rendered at the default 32 px symbol scale (ink 255 on 0)."""
    folder = root / "inkml" / "2014"
    return [render_traces(parse_inkml(folder / f"{n}.inkml").traces) for n in names]


def variants(ink: np.ndarray) -> dict[str, np.ndarray]:
    """The pictures users give, made from one render (ink 255 on 0):

    ``clean`` dark ink on white; ``reverse`` light ink on black (a board); ``color`` blue ink on
    cream paper, RGB; ``photo`` a phone photo of paper (lighting falling from one corner to the
    other, sensor noise); ``huge`` the clean picture upscaled past the preprocessing's input
    limit (``max_input_pixels``, 12.6 megapixels), which it downscales first.
    """
    height, width = ink.shape
    alpha = ink.astype(np.float32)[..., None] / 255.0
    cream, blue = np.float32([245, 235, 200]), np.float32([30, 50, 150])
    color = (cream * (1 - alpha) + blue * alpha).astype(np.uint8)
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    light = 150 + 90 * (cols / width) * (0.6 + 0.4 * rows / height)
    noise = np.random.default_rng(0).normal(0, 4, (height, width))
    photo = np.clip(light * (1 - 0.8 * alpha[..., 0]) + noise, 0, 255).astype(np.uint8)
    pixels = 1.05 * PreprocessConfig().max_input_pixels  # past the input limit: shrunk first
    factor = int(np.ceil(np.sqrt(pixels / (height * width))))
    huge = cv2.resize(paper(ink), (width * factor, height * factor), cv2.INTER_LINEAR)
    return {"clean": paper(ink), "reverse": ink, "color": color, "photo": photo, "huge": huge}
