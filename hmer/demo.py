"""``make demo``: the whole job end to end on CPU, with nothing downloaded.

1. Write fresh synthetic handwriting (``hmer.data.synth``) as a BTTR layout: a training split and a
   held-out test split of different expressions.
2. Train the shipped ``tiny`` config on it under a time budget (the real engine: same loop,
   checkpoints, metrics and plot as a GPU run), then score the held-out split with beam search.
3. Read the README's example image with the model just trained (and with the shipped model,
   when the package has one): the command a user runs next, ``hmer predict``, in action.

Everything it reads ships in the package (:mod:`hmer.paths`), so it runs from any folder; every
input is checked before the first file is written.
"""

from __future__ import annotations

import time
from pathlib import Path

from hmer.config import load_config, parse_duration
from hmer.data.datasets import write_bttr_layout
from hmer.data.synth.generate import generate_images
from hmer.data.synth.grammar import Grammar, load_grammar
from hmer.engine.plot import plot_run
from hmer.engine.train import train
from hmer.errors import ConfigError, HmerError
from hmer.paths import config_path, example_image
from hmer.runtime.recognize import Recognizer

#: The shipped config the demo trains.
CONFIG = "tiny"
DEMO_GRAMMAR = Path(__file__).resolve().parent / "data" / "synth" / "grammar_demo.yaml"


def write_synthetic(
    out: Path, n_train: int, n_test: int, seed: int, workers: int, grammar: Grammar
) -> None:
    """Train and test splits under ``out``; different seeds, so no test expression is drawn
    by the same pen path as a training one (a few short formulas may still coincide)."""
    for split, n, split_seed in (("train", n_train, seed), ("test", n_test, seed + 1)):
        write_bttr_layout(generate_images(n, split_seed, workers, grammar=grammar), out, split)


def run_demo(
    out: Path, budget: str = "4m", n_train: int = 4000, n_test: int = 200, seed: int = 0
) -> int:
    """Exit code 0. ``out`` gets ``data/`` (reused when a previous demo left a complete one)
    and one ``run-<date>-<time>/`` per call.

    Raises:
        HmerError: a bad argument or a broken install, before anything is written.
    """
    began = time.monotonic()
    out = Path(out)
    for name, count in (("n_train", n_train), ("n_test", n_test)):
        if count < 1:
            raise ConfigError(f"demo {name} must be at least 1, got {count}")
    parse_duration(budget)
    if out.exists() and not out.is_dir():
        raise HmerError(f"{out}: exists and is not a folder (the demo's output folder)")
    grammar = load_grammar(DEMO_GRAMMAR)
    example = example_image()
    data_dir = out / "data"
    cfg = load_config(
        config_path(CONFIG),
        [
            f"data.train={data_dir}",
            "data.train_split=train",
            f"data.test={data_dir}",
            "data.test_splits=[test]",
            "data.load_workers=2",
            "data.augment=false",
            f"train.time_budget={budget}",
            f"train.seed={seed}",
        ],
    )
    if not (data_dir / "test" / "caption.txt").is_file():
        print(f"writing {n_train} + {n_test} synthetic expressions to {data_dir} ...")
        write_synthetic(data_dir, n_train, n_test, seed, workers=2, grammar=grammar)
    run_dir = out / f"run-{time.strftime('%Y%m%d-%H%M%S')}"
    result = train(cfg, run_dir, started=began)
    plot = plot_run(run_dir)
    score = result.test.get("test", {}).get("exprate", float("nan"))
    print(f"\nheld-out synthetic ExpRate: {score:.1f}%  (run: {run_dir}, curves: {plot})")
    recognize_example(run_dir / "best.pt", example)
    print(f"\nwrite your own formula: hmer serve --checkpoint {run_dir / 'best.pt'}")
    return 0


def _shown(path: Path) -> Path:
    """``path`` as a person would type it here: relative when under the working folder."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def recognize_example(checkpoint: Path, example: tuple[Path, str]) -> None:
    """Print the readings of the README's example image (``(path, truth)``:
    :func:`hmer.paths.example_image`) by ``checkpoint`` and by the shipped model (when the
    package has one), beside its truth and the command that reproduces them."""
    image, truth = example
    shown = _shown(image)
    print(f"\n{shown}, truth: {truth}")
    reading = Recognizer.from_checkpoint(checkpoint).predict(image).latex
    print(f"  this run's model (hmer predict {shown} --checkpoint {checkpoint}):\n    {reading}")
    try:
        shipped = Recognizer.from_pretrained()
    except HmerError:
        print("  shipped model: none in this version (see the README, Status)")
        return
    print(f"  shipped model (hmer predict {shown}):\n    {shipped.predict(image).latex}")
