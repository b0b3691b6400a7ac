"""``make demo``: the whole job end to end on CPU, with nothing downloaded.

1. Write fresh synthetic handwriting (``hmer.data.synth``) as a BTTR layout: a training split and a
   held-out test split of different expressions.
2. Train ``configs/tiny.yaml`` on it under a time budget (the real engine: same loop, checkpoints,
   metrics and plot as a GPU run), then score the held-out split with beam search.
3. Read the README's example image with the model just trained (and with the shipped model,
   when the package has one): the command a user runs next, ``hmer predict``, in action.
"""

from __future__ import annotations

import time
from pathlib import Path

from hmer.config import load_config
from hmer.data.datasets import write_bttr_layout
from hmer.data.synth.generate import generate_images
from hmer.data.synth.grammar import load_grammar
from hmer.engine.plot import plot_run
from hmer.engine.train import train
from hmer.errors import HmerError
from hmer.runtime.recognize import Recognizer

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "tiny.yaml"
DEMO_GRAMMAR = Path(__file__).resolve().parent / "data" / "synth" / "grammar_demo.yaml"
EXAMPLE = REPO / "data" / "examples" / "example.png"


def write_synthetic(out: Path, n_train: int, n_test: int, seed: int, workers: int) -> None:
    """Train and test splits under ``out``; different seeds, so no test expression is drawn
    by the same pen path as a training one (a few short formulas may still coincide)."""
    grammar = load_grammar(DEMO_GRAMMAR)
    for split, n, split_seed in (("train", n_train, seed), ("test", n_test, seed + 1)):
        write_bttr_layout(generate_images(n, split_seed, workers, grammar=grammar), out, split)


def run_demo(
    out: Path, budget: str = "4m", n_train: int = 4000, n_test: int = 200, seed: int = 0
) -> int:
    began = time.monotonic()
    out = Path(out)
    data_dir = out / "data"
    if not (data_dir / "test" / "caption.txt").is_file():
        print(f"writing {n_train} + {n_test} synthetic expressions to {data_dir} ...")
        write_synthetic(data_dir, n_train, n_test, seed, workers=2)
    run_dir = out / f"run-{time.strftime('%Y%m%d-%H%M%S')}"
    cfg = load_config(
        CONFIG,
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
    result = train(cfg, run_dir, started=began)
    plot = plot_run(run_dir)
    score = result.test.get("test", {}).get("exprate", float("nan"))
    print(f"\nheld-out synthetic ExpRate: {score:.1f}%  (run: {run_dir}, curves: {plot})")
    recognize_example(run_dir / "best.pt")
    print(f"\nwrite your own formula: hmer serve --checkpoint {run_dir / 'best.pt'}")
    return 0


def recognize_example(checkpoint: Path) -> None:
    """Print the readings of the README's example image by ``checkpoint`` and by the shipped
    model (when the package has one), beside its truth and the command that reproduces them."""
    example = EXAMPLE.relative_to(REPO)
    truth = (EXAMPLE.parent / "example.txt").read_text().strip()
    print(f"\n{example}, truth: {truth}")
    reading = Recognizer.from_checkpoint(checkpoint).predict(EXAMPLE).latex
    print(f"  this run's model (hmer predict {example} --checkpoint {checkpoint}):\n    {reading}")
    try:
        shipped = Recognizer.from_pretrained()
    except HmerError:
        print("  shipped model: none in this version (see the README, Status)")
        return
    print(f"  shipped model (hmer predict {example}):\n    {shipped.predict(EXAMPLE).latex}")
